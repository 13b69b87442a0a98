/**
 * The policy part of a Calico node's filter table, rendered from the compiled
 * policies for `podlab node NODE iptables-save -t filter`: Felix's dispatch
 * from FORWARD to one `cali-tw-IFACE` / `cali-fw-IFACE` pair per local pod,
 * each endpoint chain accepting ESTABLISHED traffic, then jumping to the
 * `cali-pi-…` / `cali-po-…` chain of every policy that selects the pod, and
 * dropping what no policy accepted (mark bit 0x10000 is Felix's "accept").
 *
 * The chains describe what the enforcer (./enforcer.ts) does; they are a
 * view, not what is evaluated. Selector peers show as `-s`/`-d` of the pods'
 * addresses, named ports as Calico's `cali40n:` ipsets of address,port.
 */
import { createHash } from 'node:crypto';
import { calicoPolicyName, fromWorkloadChain, policyChain, toWorkloadChain } from './calico-names.ts';
import type { CompiledPolicy, CompiledRule, PolicySet } from './engine.ts';
import type { Direction } from './types.ts';

export interface LocalEndpoint {
  key: string;
  iface: string;
}

const ACCEPT_MARK = '0x10000/0x10000';
const PASS_MARK = '0x20000/0x20000';

const setName = (prefix: string, text: string) => `${prefix}${createHash('sha256').update(text).digest('base64url').slice(0, 22)}`;

function ruleLines(chain: string, dir: Direction, r: CompiledRule): string[] {
  const addr = dir === 'ingress' ? '-s' : '-d';
  const peers: string[] = [];
  if (r.peers.any) peers.push('');
  for (const ip of [...r.peers.pods.keys()].sort((a, b) => a - b)) peers.push(`${addr} ${(ip >>> 24) & 255}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}/32`);
  for (const b of r.peers.blocks) {
    peers.push(`${addr} ${b.cidr.networkAddress}/${b.cidr.prefixLen}` + (b.except.length ? ` -m set ! --match-set ${setName('cali40s:', b.text)} ${dir === 'ingress' ? 'src' : 'dst'}` : ''));
  }
  const ports: string[] = [];
  if (!r.ports) ports.push('');
  for (const p of r.ports ?? []) {
    const proto = `-p ${p.protocol.toLowerCase()}`;
    if ('name' in p) ports.push(`${proto} -m set --match-set ${setName('cali40n:', `${r.ref.policy}/${p.protocol}/${p.name}`)} dst,dst`);
    else if (p.from === 1 && p.to === 65535) ports.push(proto);
    else ports.push(`${proto} -m multiport --dports ${p.from === p.to ? p.from : `${p.from}:${p.to}`}`);
  }
  const out: string[] = [];
  const comment = `-m comment --comment "Policy ${calicoPolicyName(r.ref.policy)} ${dir} rule ${r.ref.rule}"`;
  for (const peer of peers) for (const port of ports) out.push(`-A ${chain} ${comment}${peer ? ' ' + peer : ''}${port ? ' ' + port : ''} -j MARK --set-xmark ${ACCEPT_MARK}`);
  out.push(`-A ${chain} -m mark --mark ${ACCEPT_MARK} -j RETURN`);
  return out;
}

/** The chains and rules policy adds to the filter table for these local pods. */
export function policyFilterRules(set: PolicySet, endpoints: readonly LocalEndpoint[]): { chains: string[]; rules: string[] } {
  const chains = ['cali-FORWARD', 'cali-from-wl-dispatch', 'cali-to-wl-dispatch'];
  const rules = [
    '-A FORWARD -m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD',
    '-A cali-FORWARD -i cni0 -m comment --comment "cali:from workloads" -j cali-from-wl-dispatch',
    '-A cali-FORWARD -o cni0 -m comment --comment "cali:to workloads" -j cali-to-wl-dispatch',
  ];
  const used = new Map<string, { dir: Direction; p: CompiledPolicy }>();
  const eps = [...endpoints].sort((a, b) => a.iface.localeCompare(b.iface));
  for (const ep of eps) {
    rules.push(`-A cali-from-wl-dispatch -i ${ep.iface} -j ${fromWorkloadChain(ep.iface)}`);
    rules.push(`-A cali-to-wl-dispatch -o ${ep.iface} -j ${toWorkloadChain(ep.iface)}`);
  }
  for (const ep of eps) {
    const t = set.tables.get(ep.key);
    for (const [dir, chain] of [['egress', fromWorkloadChain(ep.iface)], ['ingress', toWorkloadChain(ep.iface)]] as const) {
      chains.push(chain);
      rules.push(`-A ${chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
      rules.push(`-A ${chain} -m conntrack --ctstate INVALID -j DROP`);
      const pols = t?.[dir];
      if (!pols) {
        rules.push(`-A ${chain} -m comment --comment "No policy selects ${ep.key} for ${dir}" -j ACCEPT`);
        continue;
      }
      rules.push(`-A ${chain} -j MARK --set-xmark 0x0/0x10000`);
      rules.push(`-A ${chain} -m comment --comment "Start of policies" -j MARK --set-xmark 0x0/${PASS_MARK.split('/')[1]}`);
      for (const p of pols) {
        const pc = policyChain(p.id, dir);
        used.set(pc, { dir, p });
        rules.push(`-A ${chain} -m mark --mark 0x0/0x20000 -j ${pc}`);
        rules.push(`-A ${chain} -m mark --mark ${ACCEPT_MARK} -m comment --comment "Return if policy accepted" -j ACCEPT`);
      }
      rules.push(`-A ${chain} -m mark --mark 0x0/0x20000 -m comment --comment "Drop if no policies passed packet" -j DROP`);
    }
  }
  for (const [pc, { dir, p }] of [...used].sort(([a], [b]) => a.localeCompare(b))) {
    chains.push(pc);
    for (const r of p.rules) rules.push(...ruleLines(pc, dir, r));
  }
  return { chains, rules };
}

/**
 * Adds policy's chains to an `iptables-save` text's `*filter` table: the
 * declarations after the table's own, the rules before its COMMIT.
 */
export function mergeIntoFilter(save: string, add: { chains: string[]; rules: string[] }): string {
  const lines = save.split('\n');
  const start = lines.indexOf('*filter');
  if (start < 0) return save;
  let commit = lines.indexOf('COMMIT', start);
  if (commit < 0) return save;
  let lastDecl = start;
  for (let i = start + 1; i < commit; i++) if (lines[i].startsWith(':')) lastDecl = i;
  const decls = add.chains.filter((c) => !lines.slice(start, commit).some((l) => l.startsWith(`:${c} `))).map((c) => `:${c} - [0:0]`);
  lines.splice(lastDecl + 1, 0, ...decls);
  commit += decls.length;
  lines.splice(commit, 0, ...add.rules);
  return lines.join('\n');
}
