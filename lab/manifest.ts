/**
 * Kubernetes YAML manifests (multi-document), checked before anything starts:
 * every problem is reported as `FILE:LINE: FIELD: message`, so a bad manifest
 * given to `podlab up -f` leaves nothing half-started.
 */
import fs from 'node:fs';
import { LineCounter, parseAllDocuments, isMap, isSeq, visit, type Document, type Node as YamlNode } from 'yaml';
import type { KubeObject } from '../control-plane/types.ts';

/** A manifest problem, located. */
export class ManifestError extends Error {
  override name = 'ManifestError';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${file}:${line}: ${field ? field + ': ' : ''}${detail}`);
  }
}

/** Kinds podlab accepts, with their apiVersion. Later issues add Services, BGPPeers... */
export const SUPPORTED_KINDS: Record<string, string> = {
  Pod: 'v1',
  Namespace: 'v1',
  BGPConfiguration: 'projectcalico.org/v3',
  BGPPeer: 'projectcalico.org/v3',
  IPPool: 'projectcalico.org/v3',
  Service: 'v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  Deployment: 'apps/v1',
  ReplicaSet: 'apps/v1',
  DaemonSet: 'apps/v1',
  ConfigMap: 'v1',
  Secret: 'v1',
  ServiceAccount: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  Ingress: 'networking.k8s.io/v1',
  IngressClass: 'networking.k8s.io/v1',
  IPAddressPool: 'metallb.io/v1beta1',
  L2Advertisement: 'metallb.io/v1beta1',
  BGPAdvertisement: 'metallb.io/v1beta1',
};

export interface LoadedObject {
  obj: KubeObject;
  file: string;
  line: number;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Largest manifest file read: kube-apiserver takes 3 MiB per object; a file of many objects gets more room, not unbounded. */
export const MAX_MANIFEST_BYTES = 16 * 2 ** 20;

/** How many alias uses a YAML document may expand: enough for real manifests, far too few for a billion-laughs bomb. */
export const MAX_YAML_ALIASES = 100;

/**
 * A parsed YAML document as plain values, with the alias expansion bounded.
 * A document that expands too far becomes the caller's error at the line of
 * its first alias, instead of yaml's untyped ReferenceError.
 */
export function toJsBounded<E extends Error>(doc: Document.Parsed, lc: LineCounter, error: (line: number, detail: string) => E): unknown {
  try {
    return doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (e) {
    if (!(e instanceof ReferenceError)) throw e;
    let line = 1;
    visit(doc, {
      Alias(_key, node) {
        if (node.range) line = lc.linePos(node.range[0]).line;
        return visit.BREAK;
      },
    });
    throw error(line, `YAML aliases expand too far (more than ${MAX_YAML_ALIASES} uses): refused, as a billion-laughs document would exhaust memory`);
  }
}

/** Reads and checks every document of a YAML file (`-` reads stdin). */
export function loadManifestFile(file: string): LoadedObject[] {
  let text: string;
  try {
    if (file !== '-' && fs.statSync(file).size > MAX_MANIFEST_BYTES) {
      throw new ManifestError(file, 0, '', `the file is ${(fs.statSync(file).size / 2 ** 20).toFixed(1)} MiB: manifests over ${MAX_MANIFEST_BYTES / 2 ** 20} MiB are refused (split it)`);
    }
    text = file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof ManifestError) throw e;
    throw new ManifestError(file, 0, '', `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (text.length > MAX_MANIFEST_BYTES) throw new ManifestError(file, 0, '', `more than ${MAX_MANIFEST_BYTES / 2 ** 20} MiB of manifests on one input are refused (split it)`);
  return parseManifests(text, file);
}

/** Parses and checks manifest text; `file` is only used in messages. */
export function parseManifests(text: string, file: string): LoadedObject[] {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: LoadedObject[] = [];
  for (const doc of list) {
    if (doc.errors.length) {
      const e = doc.errors[0];
      throw new ManifestError(file, lc.linePos(e.pos[0]).line, '', `invalid YAML: ${e.message.split('\n')[0]}`);
    }
    if (doc.contents === null) continue; // an empty document between `---`s
    out.push(checkDocument(doc, lc, file));
  }
  if (!out.length) throw new ManifestError(file, 1, '', 'no objects in file');
  return out;
}

function checkDocument(doc: Document.Parsed, lc: LineCounter, file: string): LoadedObject {
  const lineOf = (path: (string | number)[]): number => {
    for (let p = path; ; p = p.slice(0, -1)) {
      const node = (p.length ? doc.getIn(p, true) : doc.contents) as YamlNode | undefined;
      if (node && node.range) return lc.linePos(node.range[0]).line;
      if (!p.length) return 1;
    }
  };
  const fail = (path: (string | number)[], detail: string): never => {
    throw new ManifestError(file, lineOf(path), fieldName(path), detail);
  };
  if (!isMap(doc.contents)) fail([], 'a manifest must be a mapping with apiVersion, kind and metadata');
  const obj = toJsBounded(doc, lc, (line, detail) => new ManifestError(file, line, '', detail)) as Record<string, unknown>;
  const kind = obj.kind;
  if (typeof kind !== 'string') fail(['kind'], 'required field is missing');
  const want = SUPPORTED_KINDS[kind as string];
  if (!want) fail(['kind'], `unsupported kind "${String(kind)}" (podlab accepts: ${Object.keys(SUPPORTED_KINDS).join(', ')})`);
  if (obj.apiVersion !== want) fail(['apiVersion'], `must be "${String(want)}" for kind ${String(kind)}, got ${JSON.stringify(obj.apiVersion)}`);
  const meta = obj.metadata as Record<string, unknown> | undefined;
  if (!meta || typeof meta !== 'object') fail(['metadata'], 'required field is missing');
  const name = meta!.name;
  if (name === undefined || name === null || name === '') fail(['metadata', 'name'], 'required field is missing');
  if (typeof name !== 'string') fail(['metadata', 'name'], `name must be a string, got ${JSON.stringify(name)} (quote it: "${String(name)}")`);
  const nameRe = kind === 'Namespace' ? DNS1123_LABEL : DNS1123_SUBDOMAIN;
  if (!nameRe.test(name as string) || (name as string).length > 253) {
    fail(['metadata', 'name'], `invalid value "${String(name)}": must be a lowercase RFC 1123 ${kind === 'Namespace' ? 'label' : 'subdomain'}`);
  }
  if (meta!.namespace !== undefined && (typeof meta!.namespace !== 'string' || !DNS1123_LABEL.test(meta!.namespace))) {
    fail(['metadata', 'namespace'], `invalid value ${JSON.stringify(meta!.namespace)}`);
  }
  for (const k of ['labels', 'annotations'] as const) {
    const m = meta![k];
    if (m === undefined) continue;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) fail(['metadata', k], 'must be a map of strings');
    for (const [lk, lv] of Object.entries(m as object)) if (typeof lv !== 'string') fail(['metadata', k, lk], `value must be a string, got ${JSON.stringify(lv)}`);
  }
  if (kind === 'Pod') checkPod(doc, obj, fail);
  return { obj: obj as unknown as KubeObject, file, line: lineOf([]) };
}

function checkPod(doc: Document.Parsed, obj: Record<string, unknown>, fail: (path: (string | number)[], d: string) => never): void {
  const spec = obj.spec as Record<string, unknown> | undefined;
  if (!spec || typeof spec !== 'object') fail(['spec'], 'required field is missing');
  if (spec.nodeName !== undefined && typeof spec.nodeName !== 'string') fail(['spec', 'nodeName'], 'must be a string');
  const containers = spec.containers;
  const node = doc.getIn(['spec', 'containers'], true);
  if (!Array.isArray(containers) || !isSeq(node) || containers.length === 0) fail(['spec', 'containers'], 'at least one container is required');
  const seenPorts = new Map<string, string>();
  (containers as Record<string, unknown>[]).forEach((c, i) => {
    const at = (...p: (string | number)[]) => ['spec', 'containers', i, ...p];
    if (!c || typeof c !== 'object') fail(at(), 'must be a mapping');
    if (typeof c.name !== 'string' || !DNS1123_LABEL.test(c.name)) fail(at('name'), `invalid or missing container name ${JSON.stringify(c.name)}`);
    if (typeof c.image !== 'string' || !c.image) fail(at('image'), 'required field is missing');
    if (c.ports === undefined) return;
    if (!Array.isArray(c.ports)) fail(at('ports'), 'must be a list');
    (c.ports as Record<string, unknown>[]).forEach((p, j) => {
      const cp = p?.containerPort;
      if (!Number.isInteger(cp) || (cp as number) < 1 || (cp as number) > 65535) fail(at('ports', j, 'containerPort'), `must be a port number 1-65535, got ${JSON.stringify(cp)}`);
      const proto = (p.protocol as string | undefined) ?? 'TCP';
      if (!['TCP', 'UDP', 'SCTP'].includes(proto)) fail(at('ports', j, 'protocol'), `must be TCP, UDP or SCTP, got ${JSON.stringify(p.protocol)}`);
      const key = `${String(cp)}/${String(proto)}`;
      const other = seenPorts.get(key);
      // The pod's containers share one network namespace: two cannot bind one port.
      if (other) fail(at('ports', j, 'containerPort'), `port ${key} is already used by container "${other}" of this pod (containers share the pod's network namespace)`);
      seenPorts.set(key, c.name as string);
    });
  });
}

function fieldName(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i ? `.${p}` : p)).join('');
}
