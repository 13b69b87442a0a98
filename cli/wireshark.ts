/**
 * Reading podlab's captures in Wireshark: the "podlab" configuration profile
 * (Decode As entries for the ports Wireshark 4.0 does not map by itself) and
 * the exact tshark flags that decode a given lab's capture without it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../common/compiled.js';
import type { LabOptionsRecord } from '../lab/state.ts';
import { backendNamed } from '../backends/registry.ts';

const PROFILE_DIR = path.join(ROOT, 'wireshark/profiles/podlab');

/** Where Wireshark looks for personal profiles: $WIRESHARK_CONFIG_DIR, $XDG_CONFIG_HOME/wireshark, else ~/.config/wireshark. */
export function wiresharkConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.WIRESHARK_CONFIG_DIR) return env.WIRESHARK_CONFIG_DIR;
  return path.join(env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config'), 'wireshark');
}

/** Copies the podlab profile into Wireshark's profiles directory; returns where it went. */
export function installProfile(configDir = wiresharkConfigDir()): string {
  const dest = path.join(configDir, 'profiles', 'podlab');
  fs.mkdirSync(dest, { recursive: true });
  for (const f of fs.readdirSync(PROFILE_DIR)) fs.copyFileSync(path.join(PROFILE_DIR, f), path.join(dest, f));
  return dest;
}

/**
 * tshark's `-d` flags for a lab's underlay: its VXLAN port as VXLAN (Wireshark
 * 4.0 maps only 4789), for backends with pods on the underlay in local labs
 * the bare-IPv4 wire as IPv4, and a backend's own port (flannel UDP's 8285).
 */
export function decodeFlags(o: Pick<LabOptionsRecord, 'vxlanPort' | 'wirePort' | 'backend' | 'mode' | 'wire'>): string[] {
  const flags = [`-d udp.port==${o.vxlanPort},vxlan`];
  const b = backendNamed(o.backend);
  const bareWire = b.ipUnderlay && (o.mode !== 'netns' || o.wire === 'udp');
  if (bareWire) flags.push(`-d udp.port==${o.wirePort ?? 8473},ip`);
  if (b.udpDecode) flags.push(`-d udp.port==${b.udpDecode.port},${b.udpDecode.as}`);
  return flags;
}

/** The line a capture prints so the user can decode what it wrote. */
export function decodeHint(o: Parameters<typeof decodeFlags>[0], write: string): string {
  const flags = decodeFlags(o).join(' ');
  if (write === '-') return `podlab: decode the stream with: ... -w - | tshark -i - ${flags}   (or: | wireshark -k -i - -C podlab, after podlab wireshark --install-profile)`;
  return `podlab: decode with: tshark -r ${write} ${flags}   (or: wireshark -C podlab ${write}, after podlab wireshark --install-profile)`;
}
