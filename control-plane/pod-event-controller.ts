/**
 * The Events that the scheduler and the kubelet write about a Pod, derived
 * from the Pod's own changes (the node agents only report status):
 * Scheduled when it is bound to a node, FailedScheduling while no node can
 * take it, Pulled / Created / Started when a container starts running, and
 * Failed when its app cannot start.
 */
import type { EventRecorder } from './event-recorder.ts';
import { PODS, resourceKeyOf } from './resources.ts';
import type { Store } from './store.ts';
import type { Pod } from './types.ts';

interface ContainerStatusLike {
  name?: string;
  image?: string;
  state?: { running?: unknown; waiting?: { reason?: string; message?: string }; terminated?: unknown };
}

function statuses(p: Pod | undefined): ContainerStatusLike[] {
  const s = p?.status?.containerStatuses;
  return Array.isArray(s) ? (s as ContainerStatusLike[]) : [];
}

/** Waiting reasons of a container on its way up, not failures (the sandbox's own failure has its Event from the kubelet). */
const STARTING = new Set(['ContainerCreating', 'PodInitializing']);

export class PodEventController {
  constructor(private readonly recorder: EventRecorder) {}

  install(store: Store): void {
    store.subscribe((ev) => {
      if (resourceKeyOf(ev.rt) !== resourceKeyOf(PODS) || ev.type === 'DELETED') return;
      const pod = ev.object as Pod;
      const prev = ev.prev as Pod | undefined;
      const node = pod.spec?.nodeName;
      const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
      if (node && !prev?.spec?.nodeName && scheduled?.status === 'True') {
        this.recorder.record(pod, 'Normal', 'Scheduled', `Successfully assigned ${pod.metadata.namespace}/${pod.metadata.name} to ${node}`, { component: 'default-scheduler' });
      }
      if (!node && scheduled?.status === 'False' && (ev.type === 'ADDED' || prev?.status?.conditions?.find((c) => c.type === 'PodScheduled')?.message !== scheduled.message)) {
        this.recorder.record(pod, 'Warning', 'FailedScheduling', scheduled.message ?? 'no node available', { component: 'default-scheduler' });
      }
      if (!node) return;
      const kubelet = { component: 'kubelet', host: node };
      for (const cs of statuses(pod)) {
        const before = statuses(prev).find((x) => x.name === cs.name);
        const field = `spec.containers{${cs.name}}`;
        if (cs.state?.running && !before?.state?.running) {
          const image = pod.spec?.containers.find((c) => c.name === cs.name)?.image ?? cs.image ?? '';
          this.recorder.record(pod, 'Normal', 'Pulled', `Container image "${image}" already present on machine`, kubelet, field);
          this.recorder.record(pod, 'Normal', 'Created', `Created container ${cs.name}`, kubelet, field);
          this.recorder.record(pod, 'Normal', 'Started', `Started container ${cs.name}`, kubelet, field);
        } else if (cs.state?.waiting?.reason && !STARTING.has(cs.state.waiting.reason) && cs.state.waiting.reason !== before?.state?.waiting?.reason) {
          this.recorder.record(pod, 'Warning', 'Failed', `Error: ${cs.state.waiting.message ?? cs.state.waiting.reason}`, kubelet, field);
        }
      }
    });
  }
}
