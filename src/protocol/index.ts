/** The protocol module's public surface (pure: no fs, sockets or SQLite). See docs/protocol.md. */
export * from './limits.js';
export * from './messages.js';
export { parseControl, isMessageType, type Role } from './validate.js';
export {
  encodeControl, encodeChunk, frameChunkInPlace, decodeFrame,
  type Frame, type ControlFrame, type ChunkFrame, type AgentFrame, type ReceiverFrame,
} from './codec.js';
export { manifestPages, resultBatches } from './batch.js';
export { newNonce, agentMac, receiverMac, macEqual, pickProtocol } from './handshake.js';
