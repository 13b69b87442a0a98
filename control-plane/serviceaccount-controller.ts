/**
 * The service account controller's visible part: a `default` ServiceAccount
 * in every namespace, created with the namespace and restored if deleted.
 */
import { SERVICEACCOUNTS } from './core-resources.ts';
import { NAMESPACES, resourceKeyOf } from './resources.ts';
import type { Store } from './store.ts';

export class ServiceAccountController {
  install(store: Store): void {
    const ensure = (ns: string): void => {
      if (!store.tryGet(NAMESPACES, ns) || store.tryGet(SERVICEACCOUNTS, 'default', ns)) return;
      store.create(SERVICEACCOUNTS, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: ns } });
    };
    store.subscribe((ev) => {
      const key = resourceKeyOf(ev.rt);
      if (key === resourceKeyOf(NAMESPACES) && ev.type === 'ADDED') ensure(ev.object.metadata.name);
      else if (key === resourceKeyOf(SERVICEACCOUNTS) && ev.type === 'DELETED' && ev.object.metadata.name === 'default') ensure(ev.object.metadata.namespace ?? 'default');
    });
    store.onOpen(() => {
      for (const ns of store.objectsOf(NAMESPACES)) ensure(ns.metadata.name);
    });
  }
}
