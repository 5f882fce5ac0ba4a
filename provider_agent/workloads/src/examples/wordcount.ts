// wordcount: a buyer's own workload in AssemblyScript, built to WebAssembly (WASI preview 1).
//
// Counts lines, words and bytes of each input file named in the arguments (files the buyer
// uploaded, mapped read-only under /input), writes one line per file to /work/out/counts.tsv
// (the run's output file) and prints the totals on stdout. No argument: it counts stdin.
// AssemblyScript has no WASI library of its own any more, so the few WASI calls it needs are
// declared here; the preopened directories are found by name (fd_prestat_dir_name).
// No clock, no randomness: a deterministic run reproduces it byte for byte.
//
// Build (the compiler is in node_modules, from `npm ci`):
//   node node_modules/assemblyscript/bin/asc.js provider_agent/workloads/src/examples/wordcount.ts \
//       -o wordcount-as.wasm --runtime stub --optimize --noAssert \
//       --use abort=provider_agent/workloads/src/examples/wordcount/abort

@external("wasi_snapshot_preview1", "args_sizes_get")
declare function args_sizes_get(argc: usize, buf_size: usize): u16;
@external("wasi_snapshot_preview1", "args_get")
declare function args_get(argv: usize, buf: usize): u16;
@external("wasi_snapshot_preview1", "fd_prestat_get")
declare function fd_prestat_get(fd: u32, prestat: usize): u16;
@external("wasi_snapshot_preview1", "fd_prestat_dir_name")
declare function fd_prestat_dir_name(fd: u32, path: usize, len: u32): u16;
@external("wasi_snapshot_preview1", "path_open")
declare function path_open(fd: u32, dirflags: u32, path: usize, path_len: u32, oflags: u16,
                           rights: u64, inheriting: u64, fdflags: u16, opened: usize): u16;
@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: u32, iovs: usize, iovs_len: u32, nread: usize): u16;
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovs_len: u32, nwritten: usize): u16;
@external("wasi_snapshot_preview1", "fd_close")
declare function fd_close(fd: u32): u16;
@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

const RIGHT_READ: u64 = 2;   // fd_read
const RIGHT_WRITE: u64 = 64; // fd_write
const O_CREAT: u16 = 1;
const O_TRUNC: u16 = 8;
const SCRATCH: usize = memory.data(16);
const BUF_SIZE: i32 = 65536;

function writeAll(fd: u32, s: string): void {
  const utf8 = String.UTF8.encode(s);
  let ptr = changetype<usize>(utf8);
  let len = <usize>utf8.byteLength;
  while (len > 0) {
    store<u32>(SCRATCH, <u32>ptr);
    store<u32>(SCRATCH, <u32>len, 4);
    if (fd_write(fd, SCRATCH, 1, SCRATCH + 8) != 0) fail(fd == 2 ? 3 : 1, "write failed");
    const n = <usize>load<u32>(SCRATCH + 8);
    ptr += n;
    len -= n;
  }
}

function fail(code: u32, message: string): void {
  if (code != 3) writeAll(2, message + "\n");
  proc_exit(code);
  unreachable();
}

/** The preopened directory named `name` (by trying fds from 3 until one is not preopened). */
function preopen(name: string): u32 {
  for (let fd: u32 = 3; fd < 64; fd++) {
    if (fd_prestat_get(fd, SCRATCH) != 0) break;
    const len = load<u32>(SCRATCH, 4);
    const buf = new ArrayBuffer(<i32>len);
    if (fd_prestat_dir_name(fd, changetype<usize>(buf), len) != 0) continue;
    if (String.UTF8.decode(buf) == name) return fd;
  }
  fail(1, "no preopened directory " + name);
  return 0;
}

function open(dir: u32, path: string, oflags: u16, rights: u64): u32 {
  const utf8 = String.UTF8.encode(path);
  const err = path_open(dir, 0, changetype<usize>(utf8), <u32>utf8.byteLength, oflags, rights, 0, 0, SCRATCH);
  if (err != 0) fail(1, path + ": cannot open (WASI errno " + err.toString() + ")");
  return load<u32>(SCRATCH);
}

function args(): Array<string> {
  args_sizes_get(SCRATCH, SCRATCH + 4);
  const argc = load<u32>(SCRATCH);
  const ptrs = new ArrayBuffer(<i32>argc * 4);
  const buf = new ArrayBuffer(<i32>load<u32>(SCRATCH, 4));
  args_get(changetype<usize>(ptrs), changetype<usize>(buf));
  const out = new Array<string>();
  for (let i: u32 = 1; i < argc; i++) {
    const p = <usize>load<u32>(changetype<usize>(ptrs) + i * 4);
    let end = p;
    while (load<u8>(end) != 0) end++;
    out.push(String.UTF8.decodeUnsafe(p, end - p));
  }
  return out;
}

class Counts {
  lines: u64 = 0;
  words: u64 = 0;
  bytes: u64 = 0;
  row(name: string): string {
    return name + "\t" + this.lines.toString() + "\t" + this.words.toString() + "\t" + this.bytes.toString() + "\n";
  }
}

function count(fd: u32): Counts {
  const c = new Counts();
  const buf = new Uint8Array(BUF_SIZE);
  let inWord = false;
  while (true) {
    store<u32>(SCRATCH, <u32>buf.dataStart);
    store<u32>(SCRATCH, <u32>BUF_SIZE, 4);
    if (fd_read(fd, SCRATCH, 1, SCRATCH + 8) != 0) fail(1, "read failed");
    const n = <i32>load<u32>(SCRATCH + 8);
    if (n == 0) break;
    for (let i = 0; i < n; i++) {
      const ch = buf[i];
      c.bytes++;
      if (ch == 10) c.lines++;
      const space = ch == 32 || (ch >= 9 && ch <= 13);
      if (!space && !inWord) c.words++;
      inWord = !space;
    }
  }
  return c;
}

export function _start(): void {
  const names = args();
  const work = preopen("/work");
  const out = open(work, "out/counts.tsv", O_CREAT | O_TRUNC, RIGHT_WRITE);
  const total = new Counts();
  let rows = "";
  if (names.length == 0) {
    const c = count(0);
    rows += c.row("-");
    total.lines = c.lines; total.words = c.words; total.bytes = c.bytes;
  } else {
    const input = preopen("/input");
    for (let i = 0; i < names.length; i++) {
      const fd = open(input, names[i], 0, RIGHT_READ);
      const c = count(fd);
      fd_close(fd);
      rows += c.row(names[i]);
      total.lines += c.lines; total.words += c.words; total.bytes += c.bytes;
    }
  }
  writeAll(out, rows);
  fd_close(out);
  writeAll(1, "total " + total.lines.toString() + " " + total.words.toString() + " " + total.bytes.toString() + "\n");
}

// Called on an assertion failure or out-of-bounds access (--use abort=...).
export function abort(message: usize, file: usize, line: u32, column: u32): void {
  proc_exit(70);
  unreachable();
}
