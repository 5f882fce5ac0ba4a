// Dense matrix multiply C = A x B of n x n f64 matrices filled by a fixed 64-bit LCG from a seed.
// Input (stdin): "n seed". Output: the sum of C's entries and C[0][0], C[n-1][n-1], as decimals
// printed with 17 significant digits, so any IEEE-754 machine reproduces them bit for bit.
import { readAll, writeString, fail, parseInts } from "./io";

let state: u64 = 0;

function next(): f64 {
  // Knuth's MMIX LCG; the top 53 bits become a double in [0, 1)
  state = state * 6364136223846793005 + 1442695040888963407;
  return <f64>(state >>> 11) * (1.0 / 9007199254740992.0);
}

export function _start(): void {
  const args = parseInts(readAll());
  if (args.length < 2) fail(2);
  const n = <i32>args[0];
  if (n < 1 || n > 2048) fail(2);
  state = <u64>args[1];
  const a = new Float64Array(n * n);
  const b = new Float64Array(n * n);
  const c = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) a[i] = next();
  for (let i = 0; i < n * n; i++) b[i] = next();
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      for (let j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j];
    }
  }
  let sum = 0.0;
  for (let i = 0; i < n * n; i++) sum += c[i];
  writeString(sum.toString() + " " + c[0].toString() + " " + c[n * n - 1].toString() + "\n");
}
