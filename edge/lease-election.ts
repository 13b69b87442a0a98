/**
 * Leader election over a coordination.k8s.io/v1 Lease, as client-go's
 * tools/leaderelection does it (tryAcquireOrRenew with a LeaseLock):
 *
 * - no Lease: create it holding it (a create that loses the race is 409);
 * - held by another identity whose record this candidate has seen change
 *   within `leaseDuration` (measured on the candidate's own clock from when it
 *   observed the change, never from the holder's timestamps): not acquired;
 * - otherwise (expired, released, or ours): update it with our identity and
 *   renewTime, keeping acquireTime and leaseTransitions when renewing; the
 *   update carries the resourceVersion read, so two candidates racing for an
 *   expired Lease cannot both win (the loser gets 409 Conflict).
 *
 * Release (client-go's ReleaseOnCancel) writes an empty holder and a 1 s
 * duration, so the next candidate need not wait out the lease.
 */
import type { ApiClient } from '../control-plane/client.ts';
import type { Lease } from '../control-plane/core-resources.ts';
import { microTime } from '../control-plane/node-lease.ts';

/** How long a lease lasts and how often candidates (and the holder) try. */
export interface ElectionTiming {
  leaseDurationMs: number;
  retryPeriodMs: number;
}

/** What one elector needs. */
export interface LeaseElectorOptions {
  namespace: string;
  name: string;
  identity: string;
  timing: ElectionTiming;
  /** Monotonic milliseconds (the candidate's own clock). */
  now: () => number;
}

export class LeaseElector {
  private observedRecord = '';
  private observedAt = 0;
  /** True after the last successful acquire or renew, false after a failed one. */
  leading = false;
  /** The holder last seen in the Lease ('' when released or unknown). */
  holder = '';

  constructor(
    private readonly api: ApiClient,
    readonly o: LeaseElectorOptions,
  ) {}

  /** One attempt: true when this identity holds the Lease afterwards. Never throws (an API error is a failed attempt). */
  async tryAcquireOrRenew(): Promise<boolean> {
    try {
      this.leading = await this.attempt();
    } catch {
      this.leading = false;
    }
    return this.leading;
  }

  private async attempt(): Promise<boolean> {
    const { namespace, name, identity, timing } = this.o;
    const now = this.o.now();
    const durationSeconds = Math.max(1, Math.ceil(timing.leaseDurationMs / 1000));
    const existing = await this.api.get<Lease>('leases', name, namespace);
    if (!existing) {
      await this.api.create(
        'leases',
        {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(), renewTime: microTime(), leaseTransitions: 0 },
        },
        namespace,
      );
      this.observe(identity, now);
      return true;
    }
    const spec = (existing.spec ?? {});
    const record = JSON.stringify([spec.holderIdentity ?? '', spec.renewTime ?? '', spec.leaseDurationSeconds ?? 0]);
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAt = now;
    }
    const holder = spec.holderIdentity ?? '';
    this.holder = holder;
    const heldFor = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (holder !== '' && holder !== identity && this.observedAt + heldFor > now) return false;
    const mine = holder === identity;
    await this.api.update('leases', {
      ...existing,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: microTime(),
        acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(),
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    });
    this.observe(identity, now);
    return true;
  }

  private observe(holder: string, now: number): void {
    this.holder = holder;
    this.observedRecord = '';
    this.observedAt = now;
  }

  /** Gives the Lease up if this identity holds it. Never throws. */
  async release(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    try {
      const existing = await this.api.get<Lease>('leases', this.o.name, this.o.namespace);
      const spec = (existing?.spec ?? {}) as Record<string, unknown>;
      if (!existing || spec.holderIdentity !== this.o.identity) return;
      await this.api.update('leases', { ...existing, spec: { ...spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime() } });
      this.holder = '';
    } catch {
      // The lease then expires on its own.
    }
  }
}
