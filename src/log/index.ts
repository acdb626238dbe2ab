/**
 * The log area's public entry: the record codec, log file names, the scanner (recovery,
 * replay, shipping) and the writer with group commit. Other areas import from here only.
 */
export {
  checkEntryFields,
  decodeHeader,
  encodeRecord,
  encodeRecordInto,
  payloadChecksum,
  recordBytesMax,
  recordEncodedBytes,
  recordFormatVersion,
  recordFromHeader,
  recordHeaderBytes,
  recordLengthBytes,
  recordMagic,
  recordPayloadBytesMax,
  verifyPayload,
  verifyPayloadParts,
  type DecodedHeader,
  type HeaderFault,
  type LogEntry,
  type LogRecord,
  type RecordHeader,
  type RecordKind,
} from './record.js';
export {
  compareLogNames,
  formatLogName,
  isValidLogHost,
  isValidLogNumber,
  listLogFiles,
  logBytesBetween,
  logNumberMax,
  logNumberMin,
  parseLogName,
  type LogFileName,
} from './names.js';
export { LogScanner, scanLog, type ScanEntry, type ScanOptions, type ScanOutcome } from './scanner.js';
export { LogWriter, type LogEnd, type LogPosition, type LogRotateEvent, type LogWriterOptions, type LogWriterStats } from './writer.js';
export {
  logBatchBytesMaxDefault,
  logPendingBytesMaxDefault,
  logRotateBytesDefault,
  scanReadChunkBytesDefault,
} from './limits.js';
