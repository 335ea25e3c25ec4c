/** Public surface: stage factories, their option types, the pipeline, metrics and errors. */
export * from './types.js';
export * from './errors.js';
export { isBatch, isQuarantined, quarantined, parseLooseText, type QuarantinedChunk } from './chunks.js';
export { TOO_DEEP, truncateDepth } from './record-text.js';
export { createAtlassianEventsSource, parsePage, retryHintMs, type AtlassianEventsOptions, type AtlassianEventsDeps, type AtlassianEventsSource } from './sources/atlassian-events.js';
export { attachRawText, dataElementOffsets, MAX_RAW_DEPTH, timeValueRange } from './sources/page-scan.js';
export { processPage, guessNextCursor, type ProcessedPage, type ProcessPageOptions, type QuarantineEntry } from './sources/page-process.js';
export { PageProcessor } from './sources/page-workers.js';
export {
  createReplaySource,
  fileInput,
  stdinInput,
  s3Inputs,
  parseS3Url,
  replayPosition,
  readReplayPosition,
  type ReplayInput,
  type ReplayProgress,
  type ReplaySourceOptions,
  type ReplaySourceDeps,
} from './sources/replay.js';
export { runReplay, REPLAY_ORG_ID, type ReplayOptions, type ReplayDeps, type ReplayResult } from './replay.js';
export { createValidate, validateRecord, validateBatch, validateLoose, type ValidateOptions } from './transforms/validate.js';
export { createNormalizeTime, normalizeTime, normalizeEvent, normalizeBatch, type NormalizeTimeOptions } from './transforms/normalize-time.js';
export { createDedupe, dedupeBatch, admitLoose, DedupeWindow, DEFAULT_DEDUPE_WINDOW, type DedupeOptions, type DedupeStage } from './transforms/dedupe.js';
export { createQuarantineRoute, quarantineLine, type QuarantineRouteOptions } from './transforms/quarantine-route.js';
export { createUnbatch, unpackEvents, type UnbatchOptions } from './transforms/unbatch.js';
export { createObjectSink, ObjectSink, type ObjectSinkOptions, type ObjectSinkDeps, type ObjectStore, type ObjectUpload, type ObjectKind, type SinkJournal, type EpochCommit } from './sinks/object-sink.js';
export { createS3Sink, createS3Client, S3Store, type S3SinkOptions, type S3StoreOptions, type S3ClientOptions } from './sinks/s3.js';
export { createLocalDirSink, LocalDirStore, type LocalDirSinkOptions, type LocalDirStoreOptions } from './sinks/local-dir.js';
export { runPipeline, createOutputSink, outputWhere, type RunResult, DEFAULT_PREFIX, DEFAULT_QUARANTINE_PREFIX, type PipelineOptions, type PipelineDeps, type PipelineResult, type OutputOptions } from './pipeline.js';
export { loadState, saveState, acquireLock, StateJournal, type CheckpointState, type RunSummary } from './checkpoint.js';
export { createMetrics, type PipelineMetrics, type MetricsOptions } from './metrics.js';
export { startMetricsServer, type MetricsServer, type MetricsServerOptions } from './metrics-server.js';
export { createLogger, type Logger, type LogLevel } from './log.js';
export { systemClock, type Clock } from './clock.js';
export { setHeapGrowth, DEFAULT_HEAP_GROWTH_PERCENT, MAX_HEAP_GROWTH_PERCENT } from './heap.js';
export { parseRateBudget, type RateBudget } from './sources/rate-pacer.js';
