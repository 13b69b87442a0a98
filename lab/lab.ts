/**
 * The lab library's front: `up` picks the launcher (loopback processes, or
 * network namespaces as root); everything else comes from ./launch.ts.
 */
import type { LabRecord } from './state.ts';
import type { UpOptions } from './launch.ts';
import { upLocal } from './local-lab.ts';
import { upNetns } from './netns-lab.ts';

export * from './launch.ts';

/** Brings a lab up (local or netns mode); all or nothing. */
export function up(o: UpOptions): Promise<LabRecord> {
  return o.mode === 'netns' ? upNetns(o) : upLocal(o);
}
