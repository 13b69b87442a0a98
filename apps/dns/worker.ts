/**
 * A CoreDNS pod's code on a worker thread of its own (./worker-serve.ts says
 * what it does), for a CoreDNS started outside an agent; agents run it on
 * their shared thread instead (node-agent/threads.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serve } from './worker-serve.ts';

serve(parentPort!, workerData);
