/**
 * The lab library's front: `up` picks the launcher (loopback processes, or
 * network namespaces as root); everything else comes from ./launch.ts.
 */
import type { LabRecord } from './state.ts';
import type { UpOptions } from './launch.ts';
import { upLocal } from './local-lab.ts';
import { upNetns } from './netns-lab.ts';
import { readLab } from './state.ts';
import { startSupervisor } from './supervisor.ts';
import { LabError, down } from './launch.ts';

export * from './launch.ts';

/** Brings a lab up (local or netns mode), with its supervisor when asked; all or nothing. */
export async function up(o: UpOptions): Promise<LabRecord> {
  const rec = await (o.mode === 'netns' ? upNetns(o) : upLocal(o));
  if (!o.supervise) return rec;
  try {
    await startSupervisor(o.stateDir, o.ownerPid);
  } catch (e) {
    await down(o.stateDir).catch(() => {});
    throw new LabError(`could not start the lab's supervisor: ${(e as Error).message}`);
  }
  return readLab(o.stateDir) ?? rec;
}
