/**
 * kube-proxy's engine on a worker thread of its own (./worker-serve.ts says
 * what it does); agents run the same code on their shared thread instead
 * (node-agent/threads.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serve } from './worker-serve.ts';

serve(parentPort!, workerData);
