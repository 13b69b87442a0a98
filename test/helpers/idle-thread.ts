/** A worker thread that moves itself to SCHED_IDLE and reports what it got and its thread id (test/service-worker.test.ts). */
import { parentPort } from 'node:worker_threads';
import { lowerThisThread, threadId } from '../../common/thread-priority.ts';

parentPort!.postMessage([lowerThisThread('idle', 19), threadId()]);
