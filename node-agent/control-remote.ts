/**
 * The agent's control channel reachable from other machines of a container
 * lab: the same protocol as the 0600 Unix socket (control-server.ts), served
 * over TCP on the node IP, so the CLI in any node container can exec into,
 * capture on or query any node (`podlab exec POD` finds the pod's node through
 * the apiserver, then the node's InternalIP and `status.daemonEndpoints
 * .kubeletEndpoint.Port`, as the real apiserver finds a kubelet).
 *
 * Kept apart so it can be replaced by an apiserver-proxied path (kubectl exec
 * through the apiserver) without touching the agent. It is off unless asked
 * for (`--control-port`), listens only on the node IP, and accepts only peers
 * from the underlay subnet: in a compose lab that is the lab's own internal
 * network. There is no authentication: anything on that network may exec into
 * pods, as anything local with the socket's owner uid may.
 */
import net from 'node:net';
import { isValidIpv4 } from '../packet/addr.ts';
import { Cidr } from '../packet/cidr.ts';
import type { ControlServer } from './control-server.ts';

/** kubelet's port: where a kubernetes apiserver reaches a node agent. */
export const DEFAULT_CONTROL_PORT = 10250;

export interface RemoteControlOptions {
  /** The node IP to listen on (never 0.0.0.0: only the lab network). */
  host: string;
  port: number;
  /** Clients must come from here (the underlay CIDR). */
  allow: string;
}

/** True if `addr` (IPv4 or IPv4-mapped IPv6) is inside `cidr`. */
export function addressAllowed(addr: string | undefined, cidr: string): boolean {
  const v4 = addr?.replace(/^::ffff:/, '');
  if (!v4 || !isValidIpv4(v4)) return false;
  return Cidr.parse(cidr).contains(v4);
}

/** Serves `control` on TCP host:port; resolves once listening. */
export async function listenRemoteControl(control: ControlServer, o: RemoteControlOptions): Promise<net.Server> {
  const server = net.createServer((sock) => {
    if (!addressAllowed(sock.remoteAddress, o.allow)) {
      sock.destroy();
      return;
    }
    sock.setNoDelay(true);
    control.attach(sock);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
