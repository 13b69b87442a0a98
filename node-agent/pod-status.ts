/**
 * The status a kubelet reports for a running pod: phase, IPs, the standard
 * conditions and one status per container. Shared by the emulated node agent
 * and the kernel-node agent.
 */
import type { Pod } from '../control-plane/types.ts';
import { formatTimestamp } from '../control-plane/timestamp.ts';

/** `status` of a Running pod with `ip` on the node at `hostIp`; `container` may refine a container's entry. */
export function runningPodStatus(p: Pod, ip: string, hostIp: string, container: (name: string) => Record<string, unknown> = () => ({})): { status: Record<string, unknown> } {
  const now = formatTimestamp(Date.now());
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

/** The reason podlab gives on PodReadyToStartContainers when the sandbox has no network, as the kubelet's Event names it. */
export const SANDBOX_FAILED_REASON = 'FailedCreatePodSandBox';

/**
 * `status` of a pod whose sandbox cannot be created (CNI's ADD failed, e.g. host-local has no free
 * address): Pending, not ready, its containers waiting in ContainerCreating, as the kubelet reports it.
 * The kubelet leaves PodReadyToStartContainers without a reason; podlab puts the CNI error there too, so
 * the cause is in the pod's own status and not only in an Event that expires.
 */
export function sandboxFailedPodStatus(p: Pod, hostIp: string, message: string): { status: Record<string, unknown> } {
  const now = formatTimestamp(Date.now());
  const names = p.spec?.containers.map((c) => c.name) ?? [];
  const unready = `containers with unready status: [${names.join(' ')}]`;
  const cond = (type: string, status: 'True' | 'False', reason?: string, msg?: string) => ({ type, status, lastProbeTime: null, lastTransitionTime: now, ...(reason ? { reason } : {}), ...(msg ? { message: msg } : {}) });
  return {
    status: {
      phase: 'Pending',
      hostIP: hostIp,
      hostIPs: [{ ip: hostIp }],
      startTime: p.status?.startTime ?? now,
      conditions: [
        cond('PodReadyToStartContainers', 'False', SANDBOX_FAILED_REASON, message),
        cond('Initialized', 'True'),
        cond('Ready', 'False', 'ContainersNotReady', unready),
        cond('ContainersReady', 'False', 'ContainersNotReady', unready),
        cond('PodScheduled', 'True'),
      ],
      containerStatuses: p.spec?.containers.map((c) => ({
        name: c.name,
        image: c.image,
        imageID: '',
        ready: false,
        started: false,
        restartCount: 0,
        state: { waiting: { reason: 'ContainerCreating' } },
      })),
    },
  };
}
