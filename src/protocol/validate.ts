/**
 * Turns a decoded JSON value into a typed control message, or throws ProtocolError naming the
 * first problem: BAD_MESSAGE (shape), BAD_PATH (a path field), UNEXPECTED_MESSAGE (a type the
 * sender's role never sends). Nothing received is acted on before it passes through here.
 */
import { ProtocolError } from '../errors.js';
import type { Issue } from './check.js';
import { clip, describeValue } from './describe.js';
import {
  AGENT_TO_RECEIVER, MESSAGE_CHECKS, RECEIVER_TO_AGENT, isValidManifestPage,
  type AgentMessage, type ControlMessage, type MessageType, type ReceiverMessage,
} from './messages.js';

/** Who sent a message: the receiver decodes with 'agent', the agent with 'receiver'. */
export type Role = 'agent' | 'receiver';

/** Validates `obj` as a control message sent by `from`. */
export function parseControl(obj: unknown, from: 'agent'): AgentMessage;
export function parseControl(obj: unknown, from: 'receiver'): ReceiverMessage;
export function parseControl(obj: unknown, from: Role): ControlMessage;
export function parseControl(obj: unknown, from: Role): ControlMessage {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ProtocolError('BAD_MESSAGE', `control message: expected a JSON object, got ${describeValue(obj)}`);
  }
  const type: unknown = Object.hasOwn(obj, 'type') ? (obj as { type: unknown }).type : undefined;
  if (typeof type !== 'string') {
    const problem = type === undefined ? 'missing' : `expected a string, got ${describeValue(type)}`;
    throw new ProtocolError('BAD_MESSAGE', `control message.type: ${problem}`);
  }
  if (!isMessageType(type)) {
    throw new ProtocolError('BAD_MESSAGE', `control message.type: unknown message type ${describeValue(type)}`);
  }
  const allowed = from === 'agent' ? AGENT_TO_RECEIVER : RECEIVER_TO_AGENT;
  if (!allowed.has(type)) {
    throw new ProtocolError('UNEXPECTED_MESSAGE', `${type}: not a message the ${from} sends`);
  }
  // The one bulk message: its quick yes first; the generic check runs only to explain a rejection.
  if (type === 'manifestPage' && isValidManifestPage(obj)) return obj as ControlMessage;
  const issues = MESSAGE_CHECKS[type](obj);
  if (issues !== null) throw issueError(type, issues);
  return obj as ControlMessage;
}

function isMessageType(type: string): type is MessageType {
  return Object.hasOwn(MESSAGE_CHECKS, type);
}

/** One ProtocolError for a failed check: a path problem first (BAD_PATH), else the first issue. */
function issueError(type: MessageType, issues: readonly Issue[]): ProtocolError {
  const pathIssue = issues.find((i) => i.badPath);
  const issue = pathIssue ?? issues[0];
  if (issue === undefined) return new ProtocolError('BAD_MESSAGE', `${type}: invalid`);
  const more = issues.length > 1 ? ` (+${issues.length - 1} more)` : '';
  return new ProtocolError(pathIssue ? 'BAD_PATH' : 'BAD_MESSAGE', `${type}${formatPath(issue.path)}: ${issue.message}${more}`);
}

/** ["entries", 3, "hash"] -> ".entries[3].hash" */
function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : `.${clip(seg, 40)}`;
  return out;
}
