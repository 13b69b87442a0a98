/**
 * NetworkPolicy (networking.k8s.io/v1) as the API serves it, and the few
 * facts about pods and namespaces its selectors look at.
 */
import type { KubeObject } from '../control-plane/types.ts';

/** metav1.LabelSelector. The empty selector selects everything. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

export interface IpBlock {
  cidr: string;
  except?: string[];
}

/** One `from`/`to` entry: selectors (ANDed when both are set) or an ipBlock. */
export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IpBlock;
}

export type PolicyProtocol = 'TCP' | 'UDP' | 'SCTP';

export interface NetworkPolicyPort {
  protocol?: PolicyProtocol;
  /** A number, or a named container port of the destination pod. */
  port?: number | string;
  endPort?: number;
}

export interface NetworkPolicyIngressRule {
  from?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface NetworkPolicyEgressRule {
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface NetworkPolicySpec {
  podSelector?: LabelSelector;
  ingress?: NetworkPolicyIngressRule[];
  egress?: NetworkPolicyEgressRule[];
  policyTypes?: ('Ingress' | 'Egress')[];
}

export type NetworkPolicy = KubeObject<NetworkPolicySpec, unknown>;

/** A pod as policy sees it: identity, labels, address and declared ports. */
export interface PolicyPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ip: string;
  /** Container ports, for named ports. */
  ports: { name?: string; port: number; protocol: PolicyProtocol }[];
}

export interface PolicyNamespace {
  name: string;
  labels: Record<string, string>;
}

/** Which way a rule looks: at traffic into the selected pods or out of them. */
export type Direction = 'ingress' | 'egress';
