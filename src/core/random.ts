/**
 * A seeded pseudo-random source (sfc32 seeded through splitmix32). The core draws no
 * random number itself; tests and the simulator pass one of these so that every run
 * replays exactly from its seed.
 */
export class Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
  }

  /** A uniform 32-bit unsigned integer. */
  uint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.uint32() / 4294967296) * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.uint32() / 4294967296 < p;
  }

  fill(target: Buffer): Buffer {
    for (let i = 0; i < target.length; i += 4) {
      const v = this.uint32();
      target[i] = v & 0xff;
      if (i + 1 < target.length) target[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < target.length) target[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < target.length) target[i + 3] = v >>> 24;
    }
    return target;
  }

  bytes(length: number): Buffer {
    return this.fill(Buffer.allocUnsafe(length));
  }
}
