/**
 * The one error type of the control plane: an `ApiError` carries a k8s
 * `Status` object, so the apiserver can send it as-is and the client can
 * rethrow what the server said with the same code/reason/message.
 */
import type { Status, StatusCause, StatusReason } from './types.ts';

/** An error that is (or came from) a Kubernetes `Status` failure. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  /** The full Status object, as sent on the wire. */
  readonly status: Status;

  constructor(status: Status) {
    super(status.message);
    this.status = status;
  }

  /** HTTP status code (404, 409, 410, 422, ...). */
  get code(): number {
    return this.status.code;
  }

  /** Machine-readable reason (`NotFound`, `Conflict`, ...). */
  get reason(): StatusReason {
    return this.status.reason;
  }
}

/** Builds a Status failure object. */
export function makeStatus(
  code: number,
  reason: StatusReason,
  message: string,
  details?: Status['details'],
): Status {
  const status: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  if (details) status.details = details;
  return status;
}

/** 404 `pods "x" not found`. */
export function notFound(resource: string, name: string, group = ''): ApiError {
  return new ApiError(
    makeStatus(404, 'NotFound', `${qualified(resource, group)} "${name}" not found`, withGroup({ name, kind: resource }, group)),
  );
}

/** 409 `pods "x" already exists`. */
export function alreadyExists(resource: string, name: string, group = ''): ApiError {
  return new ApiError(
    makeStatus(409, 'AlreadyExists', `${qualified(resource, group)} "${name}" already exists`, withGroup({ name, kind: resource }, group)),
  );
}

/** 409 optimistic-concurrency failure, worded like kube-apiserver. */
export function conflict(resource: string, name: string, why: string, group = ''): ApiError {
  return new ApiError(
    makeStatus(
      409,
      'Conflict',
      `Operation cannot be fulfilled on ${qualified(resource, group)} "${name}": ${why}`,
      withGroup({ name, kind: resource }, group),
    ),
  );
}

/** One field-level validation problem. */
export interface FieldError {
  /** Dotted path such as `metadata.name` or `spec.containers[0].image`. */
  field: string;
  /** `Invalid value`, `Required value`, `Forbidden`, `Duplicate value`. */
  type: 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueForbidden' | 'FieldValueDuplicate' | 'FieldValueNotSupported';
  /** The offending value; omitted for Required. */
  value?: unknown;
  detail?: string;
}

const FIELD_TYPE_TEXT: Record<FieldError['type'], string> = {
  FieldValueInvalid: 'Invalid value',
  FieldValueRequired: 'Required value',
  FieldValueForbidden: 'Forbidden',
  FieldValueDuplicate: 'Duplicate value',
  FieldValueNotSupported: 'Unsupported value',
};

/** Formats one field error the way k8s field.Error.Error() does. */
export function formatFieldError(e: FieldError): string {
  let s = `${e.field}: ${FIELD_TYPE_TEXT[e.type]}`;
  if (e.type !== 'FieldValueRequired' && e.type !== 'FieldValueForbidden' && e.value !== undefined) {
    s += `: ${JSON.stringify(e.value)}`;
  }
  if (e.detail) s += `: ${e.detail}`;
  return s;
}

/** 422 `Pod "x" is invalid: metadata.name: Invalid value: ...` (kind is the Kind, as in k8s). */
export function invalid(kind: string, name: string, errors: FieldError[], group = ''): ApiError {
  const texts = errors.map(formatFieldError);
  const joined = texts.length === 1 ? texts[0] : `[${texts.join(', ')}]`;
  // A cause's message leaves out the field, which it carries separately (kubectl prints `field: message`).
  const causes: StatusCause[] = errors.map((e, i) => ({ reason: e.type, message: texts[i].slice(e.field.length + 2), field: e.field }));
  return new ApiError(
    makeStatus(422, 'Invalid', `${kind} "${name}" is invalid: ${joined}`, withGroup({ name, kind, causes }, group)),
  );
}

/** 400 with a free-form message. */
export function badRequest(message: string): ApiError {
  return new ApiError(makeStatus(400, 'BadRequest', message));
}

/** 405 for a verb a path does not support. */
export function methodNotAllowed(method: string): ApiError {
  return new ApiError(makeStatus(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${method})`));
}

/** 403, e.g. deleting `default`. */
export function forbidden(resource: string, name: string, why: string): ApiError {
  return new ApiError(makeStatus(403, 'Forbidden', `${resource} "${name}" is forbidden: ${why}`, { name, kind: resource }));
}

/** 410 for a watch whose resourceVersion fell out of the event history. */
export function expired(requested: string, oldest: string): ApiError {
  return new ApiError(makeStatus(410, 'Expired', `too old resource version: ${requested} (${oldest})`));
}

/** 500 when the store cannot persist a mutation (the mutation is rolled back). */
export function internalError(message: string): ApiError {
  return new ApiError(makeStatus(500, 'InternalError', `Internal error occurred: ${message}`));
}

/** 404 for a path that names no resource at all. */
export function pathNotFound(): ApiError {
  return new ApiError(makeStatus(404, 'NotFound', 'the server could not find the requested resource'));
}

function qualified(resource: string, group: string): string {
  return group ? `${resource}.${group}` : resource;
}

function withGroup(details: NonNullable<Status['details']>, group: string): NonNullable<Status['details']> {
  return group ? { ...details, group } : details;
}

/** Narrowing check for a decoded JSON value that looks like a Status object. */
export function isStatus(value: unknown): value is Status {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return v.kind === 'Status' && typeof v.code === 'number' && typeof v.message === 'string';
}
