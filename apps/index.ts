/**
 * Built-in applications, chosen by container image: the agent starts one per
 * container when a pod's namespace is created and stops them when the pod
 * goes (the kubelet's role, minus the container runtime).
 *
 *   nginx, podlab/http      HTTP/1.1 on containerPorts (default 80)
 *   hashicorp/http-echo     -text=... on -listen=:5678
 *   podlab/echo             TCP + UDP echo (default 7)
 *   podlab/sink             TCP + UDP discard, counted (default 9)
 *   coredns/coredns         cluster DNS on UDP and TCP 53 from its own apiserver watch (dns/)
 *   ingress-nginx/controller  Ingress routing on 80 from its own apiserver watch (ingress/)
 *   busybox, anything else  no listener (the container "sleeps")
 *
 * The containers of a pod share its network namespace, so they reach each
 * other on localhost and cannot bind the same port: the second fails with
 * EADDRINUSE, which is logged and shown in the pod's containerStatuses
 * (waiting, CrashLoopBackOff), while the pod and `podlab exec` keep working.
 */
import type { Container } from '../control-plane/types.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import { echoApp, sinkApp } from './echo.ts';
import { httpEchoApp, nginxApp, podlabHttpApp } from './http.ts';
import { normaliseImage } from './image.ts';
import { corednsApp } from './dns/coredns.ts';
import { ingressNginxApp } from './ingress/controller.ts';
import type { AppContext, AppInstance, AppStatus, BuiltinApp } from './types.ts';

export type { AppContext, AppInstance, AppStatus, BuiltinApp } from './types.ts';

/** Image name (normalised) -> app. */
export const APPS: ReadonlyMap<string, BuiltinApp> = new Map([nginxApp, podlabHttpApp, httpEchoApp, echoApp, sinkApp, corednsApp, ingressNginxApp].map((a) => [a.name, a]));


/** The app for an image, or undefined (busybox and unknown images run no listener). */
export function appFor(image: string): BuiltinApp | undefined {
  return APPS.get(normaliseImage(image));
}

interface RunningContainer {
  container: string;
  image: string;
  app?: BuiltinApp;
  instance?: AppInstance;
  /** Why it failed to start (e.g. `listen EADDRINUSE :::80`). */
  error?: string;
}

const running = new WeakMap<PodNet, RunningContainer[]>();

/** Starts every container's app in the pod's namespace. Failures are recorded, never thrown. */
export function startPodApps(pod: PodNet, containers: Container[], ctx: AppContext, stdoutOf?: (container: string) => (line: string) => void): RunningContainer[] {
  stopPodApps(pod);
  const list: RunningContainer[] = [];
  for (const c of containers) {
    const app = appFor(c.image);
    const entry: RunningContainer = { container: c.name, image: c.image, app };
    if (app) {
      try {
        entry.instance = app.start(pod, c, { ...ctx, stdout: stdoutOf?.(c.name) });
        ctx.log?.('container app started', { pod: pod.key, container: c.name, image: c.image, app: app.name, listening: entry.instance.status().listening });
      } catch (e) {
        entry.error = (e as Error).message;
        ctx.log?.('container app failed to start', { pod: pod.key, container: c.name, image: c.image, app: app.name, error: entry.error });
      }
    }
    list.push(entry);
  }
  running.set(pod, list);
  return list;
}

/** Stops the pod's apps and closes its TCP (the namespace is going away). */
export function stopPodApps(pod: PodNet): void {
  const list = running.get(pod);
  running.delete(pod);
  for (const r of list ?? []) r.instance?.stop();
  if (list) pod.tcp.shutdown();
}

/** What runs in a pod, for `podlab exec POD -- ps`. */
export function podApps(pod: PodNet): { container: string; image: string; app: string; status?: AppStatus; error?: string }[] {
  return (running.get(pod) ?? []).map((r) => ({
    container: r.container,
    image: r.image,
    app: r.app?.name ?? '(none)',
    status: r.instance?.status(),
    error: r.error,
  }));
}

/**
 * Overrides for a container's status in the Pod: a container whose app
 * could not start is not ready, waiting in CrashLoopBackOff with the reason.
 */
export function containerStateOverride(pod: PodNet | undefined, container: string): Record<string, unknown> {
  const r = pod ? running.get(pod)?.find((x) => x.container === container) : undefined;
  if (!r?.error) return {};
  return { ready: false, started: false, state: { waiting: { reason: 'CrashLoopBackOff', message: r.error } } };
}
