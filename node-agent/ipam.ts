/**
 * host-local IPAM, as the CNI plugin that Flannel's CNI config delegates to:
 * one file per allocated address under
 * `<stateDir>/nodes/<node>/ipam/cbr0/<IP>` holding the owner (the pod's uid),
 * and `last_reserved_ip.0` so allocation continues round-robin after the last
 * address handed out instead of reusing a just-freed one at once.
 *
 * The range is the node's podCIDR minus the network address (`.0`, which is
 * flannel.1's), the gateway (`.1`, cni0) and the broadcast address.
 *
 * The files are read once, when the node's agent starts, and then kept in step
 * with its own writes (the agent is the directory's only writer, as the plugin's
 * lock makes it on a node): the plugin's scan of every file for the pod's
 * address made each allocation cost as many file reads as the node had pods
 * (150 pods on one node: ~3.5 ms of the agent's CPU per pod).
 */
import fs from 'node:fs';
import path from 'node:path';
import { intToIpv4, ipv4ToInt } from '../packet/addr.ts';
import { Cidr } from '../packet/cidr.ts';

/** Typed IPAM failure: range exhausted, or an address held by another pod. */
export class IpamError extends Error {
  override name = 'IpamError';
}

export class HostLocalIpam {
  private readonly dir: string;
  private readonly first: number;
  private readonly last: number;
  /** Every allocation on disk: IP → owner. */
  private readonly held = new Map<string, string>();
  private lastReserved: number | undefined;

  constructor(stateDir: string, node: string, podCIDR: string) {
    this.dir = path.join(stateDir, 'nodes', node, 'ipam', 'cbr0');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const cidr = Cidr.parse(podCIDR);
    this.first = cidr.network + 2;
    this.last = cidr.broadcast - 1;
    // Addresses from another range belong to a podCIDR this node no longer has (its Node was deleted and
    // registered again, with a new podCIDR): drop them, or a rebuilt pod would keep an address no route leads to.
    for (const f of this.files()) {
      if (!cidr.contains(ipv4ToInt(f))) fs.rmSync(path.join(this.dir, f), { force: true });
      else this.held.set(f, this.owner(f) ?? '');
    }
    this.lastReserved = this.readLast();
  }

  /** The address already held by `owner`, if any. */
  find(owner: string): string | undefined {
    for (const [ip, o] of this.held) if (o === owner) return ip;
    return undefined;
  }

  /**
   * Allocates for `owner`; with `want`, claims exactly that address (a restarted
   * agent rebuilding a pod that already has status.podIP).
   */
  allocate(owner: string, want?: string): string {
    const held = this.find(owner);
    if (held && (!want || held === want)) return held;
    if (want) {
      const cur = this.held.get(want);
      if (cur && cur !== owner) throw new IpamError(`address ${want} is already allocated to ${cur}`);
      this.write(want, owner);
      return want;
    }
    const lastReserved = this.lastReserved;
    const size = this.last - this.first + 1;
    const start = lastReserved !== undefined && lastReserved >= this.first && lastReserved <= this.last ? lastReserved + 1 : this.first;
    for (let i = 0; i < size; i++) {
      const n = this.first + ((start - this.first + i) % size);
      const ip = intToIpv4(n >>> 0);
      if (!this.held.has(ip)) {
        this.write(ip, owner);
        fs.writeFileSync(path.join(this.dir, 'last_reserved_ip.0'), ip);
        this.lastReserved = ipv4ToInt(ip);
        return ip;
      }
    }
    throw new IpamError(`no free address left in ${intToIpv4(this.first)}-${intToIpv4(this.last)}`);
  }

  /** Frees whatever `owner` holds. */
  release(owner: string): void {
    for (const [ip, o] of [...this.held]) {
      if (o !== owner) continue;
      fs.rmSync(path.join(this.dir, ip), { force: true });
      this.held.delete(ip);
    }
  }

  /** Every allocation: IP → owner. */
  allocations(): Map<string, string> {
    return new Map(this.held);
  }

  private files(): string[] {
    return fs.readdirSync(this.dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  }

  private owner(ip: string): string | undefined {
    try {
      return fs.readFileSync(path.join(this.dir, ip), 'utf8').trim();
    } catch {
      return undefined;
    }
  }

  private write(ip: string, owner: string): void {
    fs.writeFileSync(path.join(this.dir, ip), owner + '\n', { mode: 0o600 });
    this.held.set(ip, owner);
  }

  private readLast(): number | undefined {
    try {
      return ipv4ToInt(fs.readFileSync(path.join(this.dir, 'last_reserved_ip.0'), 'utf8').trim());
    } catch {
      return undefined;
    }
  }
}
