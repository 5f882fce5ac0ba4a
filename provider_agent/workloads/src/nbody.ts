// A gravitational N-body simulation (the classic five-body Jovian system, symplectic Euler),
// the kind of small simulation kernel buyers run. Input (stdin): "steps". Output: the total
// energy before and after, printed with full precision.
import { readAll, writeString, fail, parseInts } from "./io";

const PI = 3.141592653589793;
const SOLAR_MASS = 4.0 * PI * PI;
const DAYS = 365.24;
const N = 5;

const x = new Float64Array(N), y = new Float64Array(N), z = new Float64Array(N);
const vx = new Float64Array(N), vy = new Float64Array(N), vz = new Float64Array(N);
const m = new Float64Array(N);

function body(i: i32, px: f64, py: f64, pz: f64, qx: f64, qy: f64, qz: f64, mass: f64): void {
  x[i] = px; y[i] = py; z[i] = pz;
  vx[i] = qx * DAYS; vy[i] = qy * DAYS; vz[i] = qz * DAYS;
  m[i] = mass * SOLAR_MASS;
}

function energy(): f64 {
  let e = 0.0;
  for (let i = 0; i < N; i++) {
    e += 0.5 * m[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i]);
    for (let j = i + 1; j < N; j++) {
      const dx = x[i] - x[j], dy = y[i] - y[j], dz = z[i] - z[j];
      e -= (m[i] * m[j]) / Math.sqrt(dx * dx + dy * dy + dz * dz);
    }
  }
  return e;
}

function advance(dt: f64): void {
  for (let i = 0; i < N; i++) {
    for (let j = i + 1; j < N; j++) {
      const dx = x[i] - x[j], dy = y[i] - y[j], dz = z[i] - z[j];
      const d2 = dx * dx + dy * dy + dz * dz;
      const mag = dt / (d2 * Math.sqrt(d2));
      vx[i] -= dx * m[j] * mag; vy[i] -= dy * m[j] * mag; vz[i] -= dz * m[j] * mag;
      vx[j] += dx * m[i] * mag; vy[j] += dy * m[i] * mag; vz[j] += dz * m[i] * mag;
    }
  }
  for (let i = 0; i < N; i++) {
    x[i] += dt * vx[i]; y[i] += dt * vy[i]; z[i] += dt * vz[i];
  }
}

export function _start(): void {
  const args = parseInts(readAll());
  if (args.length < 1) fail(2);
  const steps = <i32>args[0];
  body(0, 0, 0, 0, 0, 0, 0, 1);
  body(1, 4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
       1.66007664274403694e-03, 7.69901118419740425e-03, -6.90460016972063023e-05, 9.54791938424326609e-04);
  body(2, 8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
       -2.76742510726862411e-03, 4.99852801234917238e-03, 2.30417297573763929e-05, 2.85885980666130812e-04);
  body(3, 1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
       2.96460137564761618e-03, 2.37847173959480950e-03, -2.96589568540237556e-05, 4.36624404335156298e-05);
  body(4, 1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
       2.68067772490389322e-03, 1.62824170038242295e-03, -9.51592254519715870e-05, 5.15138902046611451e-05);
  // offset the sun's momentum so the system's momentum is zero
  let px = 0.0, py = 0.0, pz = 0.0;
  for (let i = 0; i < N; i++) { px += vx[i] * m[i]; py += vy[i] * m[i]; pz += vz[i] * m[i]; }
  vx[0] = -px / SOLAR_MASS; vy[0] = -py / SOLAR_MASS; vz[0] = -pz / SOLAR_MASS;
  const before = energy();
  for (let s = 0; s < steps; s++) advance(0.01);
  writeString(before.toString() + " " + energy().toString() + "\n");
}
