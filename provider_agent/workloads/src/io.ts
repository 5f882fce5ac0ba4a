// Minimal WASI I/O for CONA workloads: read all of stdin, write to stdout, exit with a code.
// Only fd_read, fd_write and proc_exit are imported: no clock, no randomness, no files, so a
// module given the same input computes the same output with the same fuel anywhere.

@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: u32, iovs: usize, iovs_len: u32, nread: usize): u16;

@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovs_len: u32, nwritten: usize): u16;

@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

const IOV: usize = memory.data(8);
const COUNT: usize = memory.data(4);

/** Reads stdin to the end. */
export function readAll(): Uint8Array {
  let cap = 65536;
  let buf = new Uint8Array(cap);
  let len = 0;
  while (true) {
    if (len == cap) {
      const bigger = new Uint8Array(cap * 2);
      memory.copy(bigger.dataStart, buf.dataStart, len);
      buf = bigger;
      cap *= 2;
    }
    store<u32>(IOV, <u32>(buf.dataStart + len));
    store<u32>(IOV, <u32>(cap - len), 4);
    if (fd_read(0, IOV, 1, COUNT) != 0) fail(3);
    const n = load<u32>(COUNT);
    if (n == 0) break;
    len += n;
  }
  return buf.subarray(0, len);
}

/** Writes bytes [ptr, ptr+len) to stdout. */
export function writeBytes(ptr: usize, len: usize): void {
  while (len > 0) {
    store<u32>(IOV, <u32>ptr);
    store<u32>(IOV, <u32>len, 4);
    if (fd_write(1, IOV, 1, COUNT) != 0) fail(4);
    const n = <usize>load<u32>(COUNT);
    ptr += n;
    len -= n;
  }
}

export function writeString(s: string): void {
  const utf8 = String.UTF8.encode(s);
  writeBytes(changetype<usize>(utf8), <usize>utf8.byteLength);
}

export function fail(code: u32): void {
  proc_exit(code);
  unreachable();
}

// Called by the runtime on an assertion failure or out-of-bounds access (--use abort=...).
export function abort(message: usize, file: usize, line: u32, column: u32): void {
  proc_exit(70);
  unreachable();
}

const HEX = "0123456789abcdef";

export function hex8(b: u8): string {
  return HEX.charAt(b >> 4) + HEX.charAt(b & 15);
}

/** Parses a non-negative decimal integer from text (spaces and newlines end a number). */
export function parseInts(data: Uint8Array): Array<i64> {
  const out = new Array<i64>();
  let cur: i64 = 0;
  let inNum = false;
  for (let i = 0; i < data.length; i++) {
    const c = data[i];
    if (c >= 48 && c <= 57) {
      cur = cur * 10 + <i64>(c - 48);
      inNum = true;
    } else {
      if (inNum) out.push(cur);
      cur = 0;
      inNum = false;
    }
  }
  if (inNum) out.push(cur);
  return out;
}
