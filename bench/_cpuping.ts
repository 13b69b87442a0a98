import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { down, up } from '../lab/lab.ts';
import { agentCpuMs } from './backends.ts';
import { readLab } from '../lab/state.ts';
function threads(stateDir: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of readLab(stateDir)?.procs ?? []) {
    if (p.role !== 'node') continue;
    for (const t of fs.readdirSync(`/proc/${p.pid}/task`)) {
      const st = fs.readFileSync(`/proc/${p.pid}/task/${t}/stat`, 'utf8');
      const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      m.set(`${p.name}/${t}/${name}`, (Number(f[11]) + Number(f[12])) * 10);
    }
  }
  return m;
}
import { podPingRtt } from './pod-echo.ts';
import { pidCpuMs } from './backends.ts';
import { rawUdpRtt, startEchoServer } from './raw-udp.ts';
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-cpuping-'));
try {
  await up({ stateDir, nodes: 2, podsPerNode: 1, manifests: [], labNet: '127.0.99.0/24', apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true });
  await podPingRtt(stateDir, 20, 5);
  const echo = await startEchoServer();
  await rawUdpRtt(echo.port, 20, 5);
  for (const n of [400, 400]) {
    const self0 = process.cpuUsage(); const s0 = pidCpuMs(echo.pid);
    const rtt = await rawUdpRtt(echo.port, n, 5);
    const u = process.cpuUsage(self0);
    console.log(`raw ${n} pings: client ${((u.user + u.system) / 1000).toFixed(0)} ms, server ${pidCpuMs(echo.pid) - s0} ms CPU, rtt ${rtt.toFixed(3)}`);
  }
  echo.stop();
  let c = agentCpuMs(stateDir); let t = performance.now();
  await new Promise((r) => setTimeout(r, 3000));
  console.log(`idle: ${(agentCpuMs(stateDir) - c).toFixed(0)} ms CPU over ${(performance.now() - t).toFixed(0)} ms`);
  for (const n of [2, 200, 2, 400]) {
    c = agentCpuMs(stateDir); t = performance.now();
    const th0 = threads(stateDir);
    const rtt = await podPingRtt(stateDir, n, 5);
    console.log(`${n} pings: ${(agentCpuMs(stateDir) - c).toFixed(0)} ms CPU over ${(performance.now() - t).toFixed(0)} ms, rtt ${rtt}`);
    for (const [k, v] of threads(stateDir)) if (v - (th0.get(k) ?? 0) > 0) console.log(`   ${k}: ${v - (th0.get(k) ?? 0)} ms`);
  }
} finally {
  await down(stateDir);
  fs.rmSync(stateDir, { recursive: true, force: true });
}
