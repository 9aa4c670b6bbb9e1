// Types of weaver-doc.js (`@weaver/doc`), written by hand and checked by `tsc` against
// types-test.ts. The schema itself: docs/schema.md.

import type * as Y from 'yjs'

/** One of the four statuses, in rank order. */
export type Status = 'notStarted' | 'processing' | 'done' | 'error'

/** A JSON object as the schema stores it (collection configs, results). */
export type JsonObject = { [key: string]: unknown }

/** Rank of a status within one attempt: a higher rank wins over a lower one. */
export declare const STATUS_RANK: Readonly<{ notStarted: 0, processing: 1, done: 2, error: 3 }>

/** The four status names, in rank order. */
export declare const STATUSES: readonly ['notStarted', 'processing', 'done', 'error']

/** The origin the Weaver bridge uses for its own writes (the Rust `BRIDGE_ORIGIN`). */
export declare const BRIDGE_ORIGIN: 'weaver-bridge'

/** Name of the root map. */
export declare const BLOCKS: 'blocks'

/**
 * A status record as stored in a `status_log` (rule 2 decides which are valid: a positive
 * integer `attempt` and a known `status`; anything else in the log is ignored).
 */
export interface StatusRecord {
  attempt: number | bigint
  status: Status
  api_call_id?: string
  result?: JsonObject
  error?: string
  completed_at?: number
  at?: number
  [key: string]: unknown
}

/** The effective status of a logical entry (rule 3); absent optional fields are `null`. */
export interface EffectiveStatus {
  status: Status
  /** 0 when the entry has no valid record. */
  attempt: number
  api_call_id: string | null
  result: JsonObject | null
  error: string | null
  completed_at: number | null
}

/** One logical entry of a block's indexing list (rule 1: every map of one `index_name`). */
export interface LogicalEntry {
  index_name: string
  /** The first map of that name: where new records go. */
  first: Y.Map<unknown>
  maps: Y.Map<unknown>[]
  collection_configs: JsonObject
  /** Every record of every map of that name, in reading order (not yet validated). */
  records: unknown[]
}

/** One indexing-list entry of the typed JSON view. */
export interface IndexEntryView extends EffectiveStatus {
  index_name: string
  collection_configs: JsonObject
}

/** One block of the typed JSON view. */
export interface BlockView {
  id: string
  type: string
  content: string
  indexingList: IndexEntryView[]
}

/** The typed JSON view of a document (identical to the Rust `Workspace::to_json`). */
export interface BlocksView {
  /** Sorted by id in UTF-16 code unit order. */
  blocks: BlockView[]
}

/** A new block for `addBlock`. */
export interface NewBlock {
  id: string
  type: string
  /** Initial text, default `""`. */
  content?: string
}

/** An outcome for `recordOutcome` (normally written by the bridge). */
export interface Outcome {
  attempt: number | bigint
  status: Status
  api_call_id?: string | null
  result?: JsonObject | null
  error?: string | null
  completed_at?: number | bigint | null
}

/** The root `blocks` map of a document. */
export declare function getBlocksMap (doc: Y.Doc): Y.Map<unknown>

/** Is `record` a status record the reading rule accepts (rule 2)? */
export declare function isValidRecord (record: unknown): record is StatusRecord

/** The effective status over records in reading order (rules 2 and 3). */
export declare function effectiveStatus (records: Iterable<unknown>): EffectiveStatus

/** Logical entries of a block map (rule 1), in display order. */
export declare function logicalEntries (block: Y.Map<unknown>): LogicalEntry[]

/** Adds a block; throws if a block with this id exists. */
export declare function addBlock (doc: Y.Doc, block: NewBlock, origin?: unknown): void

/** Removes a block; whether it existed. */
export declare function removeBlock (doc: Y.Doc, blockId: string, origin?: unknown): boolean

/** The block's content `Y.Text` (for editor bindings), or null. */
export declare function getBlockText (doc: Y.Doc, blockId: string): Y.Text | null

/**
 * Replaces `deleteCount` UTF-16 code units at `index` with `text`; throws `RangeError` out of
 * range or across a surrogate pair, `Error` when the block is absent.
 */
export declare function editContent (doc: Y.Doc, blockId: string, index: number, deleteCount: number, text?: string, origin?: unknown): void

/** Adds the entry (attempt 1) or requests attempt A + 1; returns the requested attempt. */
export declare function requestIndex (doc: Y.Doc, blockId: string, indexName: string, collectionConfigs?: JsonObject, origin?: unknown): number

/** Removes every map named `indexName` from the block; how many. */
export declare function removeIndex (doc: Y.Doc, blockId: string, indexName: string, origin?: unknown): number

/** Appends an outcome record; `false` when skipped (duplicate, or block/entry gone). */
export declare function recordOutcome (doc: Y.Doc, blockId: string, indexName: string, outcome: Outcome, origin?: unknown): boolean

/** One block of the typed JSON view, or null when absent. */
export declare function readBlock (doc: Y.Doc, blockId: string): BlockView | null

/** The typed JSON view of the whole document. */
export declare function readBlocks (doc: Y.Doc): BlocksView
