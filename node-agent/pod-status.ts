/**
 * The status a kubelet reports for a running pod: phase, IPs, the standard
 * conditions and one status per container. Shared by the emulated node agent
 * and the kernel-node agent.
 */
import type { Pod } from '../control-plane/types.ts';

/** `status` of a Running pod with `ip` on the node at `hostIp`; `container` may refine a container's entry. */
export function runningPodStatus(p: Pod, ip: string, hostIp: string, container: (name: string) => Record<string, unknown> = () => ({})): { status: Record<string, unknown> } {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const cond = (type: string) => ({ type, status: 'True' as const, lastProbeTime: null, lastTransitionTime: now });
  return {
    status: {
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      hostIP: hostIp,
      hostIPs: [{ ip: hostIp }],
      startTime: p.status?.startTime ?? now,
      conditions: [cond('PodReadyToStartContainers'), cond('Initialized'), cond('Ready'), cond('ContainersReady'), cond('PodScheduled')],
      containerStatuses: p.spec?.containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: '',
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: now } },
        ...container(c.name),
      })),
    },
  };
}
