import { makeCluster } from './services.ts';
import { createServiceProxyEngine } from '../service-proxy/index.ts';
import { SeededRng } from '../common/rng.ts';
const big = makeCluster(10_000, 10);
const e = createServiceProxyEngine('iptables', { nodeName: 'node-1', nodeIP: '192.168.0.11', localAddresses: ['10.244.1.1'], clock: { now: () => 0 }, rng: new SeededRng(1) }) as any;
e.update(big.services, big.slices);
const s = e.iptablesSave('nat');
const lines = s.split('\n');
const kinds = new Map<string, number>();
for (const l of lines) { const k = l.replace(/KUBE-(SEP|SVC|EXT|FW|XLB|SVL)-[A-Z0-9]+/g, 'KUBE-$1-X').replace(/\d+\.\d+\.\d+\.\d+(\/\d+)?(:\d+)?/g, 'IP').replace(/"[^"]*"/g, '"C"').replace(/\d\.\d+/g, 'P').replace(/\d+/g,'N'); kinds.set(k, (kinds.get(k) ?? 0) + 1); }
for (const [k, n] of [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 14)) console.log(n, k);
console.log(lines.slice(200000, 200006).join('\n'));
