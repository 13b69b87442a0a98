/**
 * The `podlab` command once built: bin/podlab.js runs this entry's bundle
 * (one CommonJS script with V8's code cache, common/compiled.js CODE_CACHED)
 * in place of some 200 modules and packages resolved, read, linked and
 * compiled at every command. `podlab agent|apiserver|kernel-node|lb-router|supervise ...`
 * are the lab's processes (netns labs and containers start them this way);
 * everything else is the kubectl-like CLI, evaluated only then.
 */
import process from 'node:process';
import { isDaemon, runDaemon } from '../lab/daemons.ts';

/** No top-level await: the bundle is a CommonJS script. */
async function podlab(): Promise<void> {
  const verb = process.argv[2];
  if (isDaemon(verb)) await runDaemon(verb, process.argv.slice(3));
  else await import('./main.ts');
}
void podlab();
