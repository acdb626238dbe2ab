/**
 * Whether the target asks for the next range with its digests or asks for a plain copy,
 * decided from what the ranges answered so far (pure, no I/O). Digests cost the target a
 * read and a hash of its own range and the source a hash of its range; when range after
 * range turns out almost wholly different (a blank or unrelated disk) that work is
 * wasted, so the target switches to COPY, as rsync switches to whole files. It keeps
 * probing — every `copyModeProbeRanges`-th range still goes with digests — and returns to
 * digests as soon as a probe finds a range that is not almost wholly different. What this
 * can cost: at most about `copyModeProbeRanges` + `rangesInFlightMax` ranges copied that
 * need not have been, each time the disks turn from different to alike.
 */
import { copyModeAfterRanges, copyModeDifferingPerMille, copyModeProbeRanges } from './limits.js';

export type RangeMode = 'digests' | 'copy';

const perMille = 1000;

export class RangeModePolicy {
  private differentInARow = 0;
  private copying = false;
  private sinceProbe = 0;

  /** `enabled` false: always digests (a benchmark of the digest path, or an operator's choice). */
  constructor(private readonly enabled: boolean) {}

  /** The mode of the next range to ask for. */
  next(): RangeMode {
    if (!this.enabled || !this.copying) return 'digests';
    this.sinceProbe++;
    if (this.sinceProbe >= copyModeProbeRanges) {
      this.sinceProbe = 0;
      return 'digests';
    }
    return 'copy';
  }

  /** What a range asked for with digests turned out to be. */
  answered(blocks: number, differingBlocks: number): void {
    if (differingBlocks * perMille < blocks * copyModeDifferingPerMille) {
      this.differentInARow = 0;
      this.copying = false;
      this.sinceProbe = 0;
      return;
    }
    this.differentInARow++;
    if (this.differentInARow >= copyModeAfterRanges) this.copying = true;
  }

  get copyMode(): boolean {
    return this.copying;
  }
}
