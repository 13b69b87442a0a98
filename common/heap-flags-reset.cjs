// Preloaded (`--require`) by processes started with V8 heap-size flags (lab/local-lab.ts).
//
// Node's binary carries a V8 code cache for its own built-in modules, and V8 takes it only while the process's
// flags hash as the ones it was made with. A heap-size flag such as --max-semi-space-size changes that hash, so
// every built-in such a process loads (node:https, node:tls, streams, ...) is compiled from source instead:
// 15 of them took 50-53 ms of CPU against 23-24 ms, and 1.5 MB more RSS. V8 reads these flags once, when it sizes
// the heap of the isolate it makes, before any JavaScript runs; set back to their defaults here they no longer
// count in the hash (only flags off their defaults do), and the heap keeps the sizes the command line gave it (a
// young generation of 2.1 MB under churn either way, 33.6 MB without the flag). This runs before the entry's
// static imports load their built-ins.
'use strict';

// Spelt as node takes them (`--max-semi-space-size=N`, dashes or underscores), as common/young-generation.ts reads them.
const given = ['max', 'min'].filter((m) => process.execArgv.some((a) => new RegExp(`^--${m}[-_]semi[-_]space[-_]size=`).test(a)));
// Their default is 0: V8 picks the sizes itself.
if (given.length > 0) require('node:v8').setFlagsFromString(given.map((m) => `--${m}-semi-space-size=0`).join(' '));
