/**
 * `registry.k8s.io/ingress-nginx/controller` (any tag or digest): the
 * ingress-nginx controller as its own manifests deploy it (a Deployment in
 * `ingress-nginx` behind a LoadBalancer or NodePort Service). Like the real
 * one it lists and watches the apiserver itself (Ingresses, IngressClasses,
 * Services, EndpointSlices) and proxies HTTP on its pod's TCP straight to the
 * endpoints (proxy.ts). Flags read from the container's args, with `$(VAR)`
 * expanded from its env as the kubelet does:
 *
 *   --controller-class (k8s.io/ingress-nginx)   the IngressClass controller it owns
 *   --ingress-class (nginx)                     the legacy kubernetes.io/ingress.class value
 *   --watch-ingress-without-class (false)       take Ingresses with no class at all
 *   --publish-service NS/NAME                   whose address goes to the Ingresses' status
 *   --http-port (80), --healthz-port (10254)    /healthz on the latter
 *
 * The status: every owned Ingress gets `status.loadBalancer.ingress` from the
 * published Service (its LoadBalancer ingress and externalIPs; a NodePort
 * Service its externalIPs, else its ClusterIP, as ingress-nginx's
 * statusAddressFromService), or without --publish-service the address of the
 * node the controller runs on (its InternalIP: podlab Nodes have no ExternalIP). Every replica writes the same value when it
 * differs (there is no leader election; the writes are idempotent).
 *
 * No TLS (port 443 is not served), no annotations beyond the class, no
 * admission webhook. Requests that arrive before the first lists are held
 * up to 10 s, then answered 503.
 */
import { SeededRng, seedFrom } from '../../common/rng.ts';
import { ApiClient } from '../../control-plane/client.ts';
import { Informer } from '../../control-plane/informer.ts';
import type { Ingress } from '../../control-plane/ingress-resources.ts';
import type { EndpointSlice, Service } from '../../control-plane/service-resources.ts';
import type { Container, KubeObject, Node } from '../../control-plane/types.ts';
import { parseGoFlags } from '../http.ts';
import { serveHttp } from '../http-server.ts';
import type { AppInstance, BuiltinApp } from '../types.ts';
import { createIngressProxy, type ProxyState } from './proxy.ts';
import { buildRoutingTable, DEFAULT_IDENTITY, ownsIngress, type ControllerIdentity } from './routing.ts';
import { UpstreamPool } from './upstream.ts';

export const INGRESS_NGINX_IMAGE = 'registry.k8s.io/ingress-nginx/controller';
const DEFAULT_RELEASE = 'v1.11.3';
/** The nginx each release bundles, for its banner. */
const NGINX_VERSION = '1.25.5';

/** `$(VAR)` in args, from the container's env (value, or the pod's name/namespace by fieldRef), as the kubelet expands it. */
export function expandArgs(args: string[], env: Container['env'], pod: { name: string; namespace: string }): string[] {
  const vars = new Map<string, string>();
  for (const e of env ?? []) {
    const path = (e as { valueFrom?: { fieldRef?: { fieldPath?: string } } }).valueFrom?.fieldRef?.fieldPath;
    if (e.value !== undefined) vars.set(e.name, e.value);
    else if (path === 'metadata.namespace') vars.set(e.name, pod.namespace);
    else if (path === 'metadata.name') vars.set(e.name, pod.name);
  }
  // `$$(X)` is a literal `$(X)`; an unknown variable stays as written.
  return args.map((a) => a.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m: string, v?: string) => (m === '$$' ? '$' : (vars.get(v!) ?? m))));
}

/** The addresses an Ingress's status gets from the published Service (ingress-nginx's statusAddressFromService). */
export function serviceAddresses(svc: Service): string[] {
  const ext = (svc.spec?.externalIPs as string[] | undefined) ?? [];
  switch (svc.spec?.type) {
    case 'LoadBalancer':
      return [...(svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? i.hostname ?? '').filter(Boolean), ...ext];
    case 'NodePort':
      return ext.length ? ext : [svc.spec.clusterIP ?? ''].filter(Boolean);
    default:
      return [svc.spec?.clusterIP ?? ''].filter((a) => a && a !== 'None');
  }
}

/** klog's header: `I1204 12:00:00.000000       7 file.go:123] `. */
function klog(level: 'I' | 'W' | 'E', where: string, msg: string, d = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${level}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds() * 1000, 6)}       7 ${where}] ${msg}`;
}

export const ingressNginxApp: BuiltinApp = {
  name: 'ingress-nginx/controller',
  description: 'ingress-nginx: Ingress host/path routing to endpoints on --http-port (80), from its own apiserver watch; writes Ingress status',
  start(pod, container, ctx): AppInstance {
    const podRef = { name: pod.opts.name, namespace: pod.opts.namespace };
    const flags = parseGoFlags(expandArgs([...(container.command ?? []), ...(container.args ?? [])], container.env, podRef));
    const id: ControllerIdentity = {
      controllerClass: flags.get('controller-class') ?? DEFAULT_IDENTITY.controllerClass,
      ingressClass: flags.get('ingress-class') ?? DEFAULT_IDENTITY.ingressClass,
      watchWithoutClass: flags.get('watch-ingress-without-class') === 'true',
    };
    const httpPort = Number(flags.get('http-port') ?? 80);
    const healthzPort = Number(flags.get('healthz-port') ?? 10254);
    const publish = flags.get('publish-service');
    const watchNs = flags.get('watch-namespace') || undefined;
    const clock = pod.opts.clock;
    const out = (l: string) => ctx.stdout?.(l);

    const api = ctx.api ? new ApiClient(ctx.api.url, { credentials: ctx.api.credentials }) : undefined;
    const ingresses = api && new Informer<Ingress>(api, 'ingresses', { namespace: watchNs });
    const classes = api && new Informer<KubeObject>(api, 'ingressclasses');
    const services = api && new Informer<Service>(api, 'services');
    const slices = api && new Informer<EndpointSlice>(api, 'endpointslices', { namespace: watchNs });
    const informers = [ingresses, classes, services, slices].filter((i): i is NonNullable<typeof i> => !!i);

    let generation = 0;
    let built = -1;
    let state: ProxyState = { table: buildRoutingTable([]), services: [], slices: [] };
    let rendered = '';
    const owned = () => (ingresses?.list() ?? []).filter((i) => ownsIngress(i, classes?.list() ?? [], id));
    const current = (): ProxyState => {
      if (built !== generation) {
        built = generation;
        const table = buildRoutingTable(owned());
        state = { table, services: services?.list() ?? [], slices: slices?.list() ?? [] };
        // A change of servers is what makes real nginx reload; endpoint changes it takes without one.
        const r = JSON.stringify([...table.servers]);
        if (r !== rendered) {
          if (rendered) out(klog('I', 'controller.go:213', '"Backend successfully reloaded"'));
          rendered = r;
        }
      }
      return state;
    };

    let syncedAt: Promise<void> = Promise.resolve();
    if (informers.length) syncedAt = Promise.all(informers.map((i) => i.start())).then(() => undefined);
    const synced = () => informers.length > 0 && informers.every((i) => i.hasSynced);
    const waitSynced = () =>
      new Promise<boolean>((resolve) => {
        const t = clock.setTimeout(() => resolve(false), 10_000);
        void syncedAt.then(() => (t.cancel(), resolve(true)));
      });

    const pool = new UpstreamPool(pod.tcp, { clock });
    const proxy = createIngressProxy({
      pool,
      clock,
      rng: new SeededRng(seedFrom(pod.opts.seed, `ingress-nginx:${pod.opts.uid}`)),
      state: current,
      serverAddress: pod.ip,
      accessLog: out,
    });
    const servers: ReturnType<typeof serveHttp>[] = [];
    try {
      servers.push(
        serveHttp(
          pod.tcp,
          httpPort,
          async (req) => {
            if (api && !synced() && !(await waitSynced())) return { status: 503, body: 'ingress controller not synced\n' };
            return proxy.handle(req);
          },
          { serverName: 'nginx', clock },
        ),
      );
      servers.push(serveHttp(pod.tcp, healthzPort, (req) => (req.path === '/healthz' ? { status: 200, body: 'ok' } : { status: 404, body: '404 page not found\n' }), { serverName: 'ingress-nginx', clock }));
    } catch (e) {
      servers.forEach((s) => s.close());
      pool.close();
      for (const i of informers) void i.stop();
      throw e;
    }

    const release = /:(v\d+\.\d+\.\d+)(?:@|$)/.exec(container.image)?.[1] ?? DEFAULT_RELEASE;
    const rule = '-'.repeat(79);
    for (const l of [rule, 'NGINX Ingress controller', `  Release:       ${release}`, '  Build:         podlab', '  Repository:    https://github.com/kubernetes/ingress-nginx', `  nginx version: nginx/${NGINX_VERSION}`, '', rule, ''])
      out(l);
    out(klog('I', 'main.go:205', `"Creating API client" host="${ctx.api?.url ?? '(none)'}"`));
    if (!api) ctx.log?.('ingress-nginx has no apiserver to watch: every request gets 503', { pod: ctx.podName });

    // The status writer: debounced, after the lists are in.
    let statusTimer: ReturnType<typeof clock.setTimeout> | undefined;
    let stopped = false;
    let nodeAddress: string | undefined;
    const addresses = async (): Promise<string[]> => {
      if (publish) {
        const [ns, name] = publish.includes('/') ? publish.split('/', 2) : [podRef.namespace, publish];
        const svc = services?.get(`${ns}/${name}`);
        return svc ? serviceAddresses(svc) : [];
      }
      if (nodeAddress === undefined && api) {
        const node = await api.get<Node>('nodes', ctx.nodeName).catch(() => null);
        const addrs = node?.status?.addresses ?? [];
        nodeAddress = addrs.find((a) => a.type === 'InternalIP')?.address ?? '';
      }
      return nodeAddress ? [nodeAddress] : [];
    };
    const syncStatus = async () => {
      if (!api || stopped || !synced()) return;
      const want = (await addresses()).map((a) => (/^[\d.]+$/.test(a) ? { ip: a } : { hostname: a }));
      for (const ing of owned()) {
        const have = ing.status?.loadBalancer?.ingress ?? [];
        if (JSON.stringify(have) === JSON.stringify(want)) continue;
        out(klog('I', 'status.go:304', `"updating Ingress status" namespace="${ing.metadata.namespace}" ingress="${ing.metadata.name}" currentValue=${JSON.stringify(have)} newValue=${JSON.stringify(want)}`));
        await api.patchStatus('ingresses', ing.metadata.name, { status: { loadBalancer: { ingress: want } } }, ing.metadata.namespace).catch((e: Error) => {
          out(klog('E', 'status.go:310', `"error updating ingress status" err="${e.message}"`));
        });
      }
    };
    const scheduleStatus = () => {
      if (statusTimer || stopped) return;
      statusTimer = clock.setTimeout(() => {
        statusTimer = undefined;
        void syncStatus();
      }, 300);
    };
    const changed = () => {
      generation++;
      if (synced()) scheduleStatus();
    };
    for (const inf of informers) inf.on('add', changed).on('update', changed).on('delete', changed);
    void syncedAt.then(() => {
      if (!synced()) return;
      out(klog('I', 'nginx.go:317', '"Starting NGINX process"'));
      generation++;
      current();
      out(klog('I', 'controller.go:213', '"Backend successfully reloaded"'));
      scheduleStatus();
    });

    return {
      stop() {
        stopped = true;
        statusTimer?.cancel();
        servers.forEach((s) => s.close());
        pool.close();
        for (const i of informers) void i.stop();
        api?.close();
      },
      status: () => ({
        app: 'ingress-nginx/controller',
        listening: servers.map((s) => `tcp 0.0.0.0:${s.server.port}`),
        counters: {
          ingresses: owned().length,
          ...proxy.stats,
          upstreamConnections: pool.stats.connections,
          upstreamReused: pool.stats.reused,
          upstreamIdle: pool.idleCount,
        },
      }),
    };
  },
};
