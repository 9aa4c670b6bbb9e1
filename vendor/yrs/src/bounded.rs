//! Weaver patch (see `WEAVER.md` at the crate root): bounded string blocks.
//!
//! Stock yrs squashes consecutive string inserts of one client into a single [Item] and, when
//! an update carries one huge string item (Yjs squashes the same way before encoding), keeps it
//! as one block. Inserting in the middle of such a block splits it by copying its text, so every
//! small insert into a document built by appending costs O(document size). Capping string blocks
//! at [MAX_STRING_BLOCK_UTF8] bytes makes that cost O(cap) instead.
//!
//! The cap is enforced in three places: local inserts ([crate::TransactionMut] `create_item`),
//! decoded updates ([push_bounded], called by `Update::decode`) and squashing
//! (`ItemContent::try_squash` refuses to grow a string past the cap).

use crate::block::{Block, Item, ItemContent};
use crate::ID;
use std::collections::VecDeque;

/// Largest string block, in UTF-8 bytes, that yrs creates or keeps after squashing.
///
/// 16 KiB: small enough that copying a block on split costs a few µs, large enough that a 50 MB
/// text is only ~3,200 blocks (the per-block overhead of walking and encoding stays negligible).
pub const MAX_STRING_BLOCK_UTF8: usize = 16 * 1024;

/// Splits `s` into consecutive pieces of at most [MAX_STRING_BLOCK_UTF8] bytes, each ending on a
/// `char` boundary. A Rust `char` is a whole code point, so a surrogate pair (one code point
/// outside the BMP, two UTF-16 units) is never cut in half and every piece's UTF-16 length is
/// exactly the sum of its chars' lengths: the pieces' clocks add up to the original item's.
pub(crate) fn chunks(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(MAX_STRING_BLOCK_UTF8);
        // A char is at most 4 bytes and the cap is far larger, so `end` stays > 0.
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (head, tail) = rest.split_at(end);
        rest = tail;
        Some(head)
    })
}

/// True if `content` is a string longer than the cap (and so must be cut into several items).
pub(crate) fn is_oversized(content: &ItemContent) -> bool {
    matches!(content, ItemContent::String(s) if s.len_utf8() > MAX_STRING_BLOCK_UTF8)
}

/// True if squashing strings of `a` and `b` bytes would exceed the cap.
#[inline]
pub(crate) fn squash_exceeds_cap(a: usize, b: usize) -> bool {
    a.saturating_add(b) > MAX_STRING_BLOCK_UTF8
}

/// Appends a freshly decoded (not yet integrated) block to `blocks`, cutting a string item longer
/// than the cap into several items.
///
/// The pieces are exactly what Yjs itself produces when it splits an item (and what it encodes
/// when a peer already has the first part): piece *k* gets the id `clock + offset_k`, its origin
/// is the last id of piece *k-1* (the first piece keeps the original origin) and every piece
/// keeps the original right origin, parent and parent_sub. Integrating the pieces in order
/// therefore yields the same sequence as integrating the original item, on every peer, and the
/// client's clock range (state vector) is unchanged.
pub(crate) fn push_bounded(blocks: &mut VecDeque<Block>, block: Block) {
    let item = match block {
        Block::Item(item) if is_oversized(&item.content) => item,
        other => {
            blocks.push_back(other);
            return;
        }
    };
    let Item {
        id,
        origin,
        right_origin,
        parent,
        parent_sub,
        content,
        ..
    } = *item;
    let ItemContent::String(text) = content else {
        // is_oversized only accepts strings.
        return;
    };
    let mut clock = id.clock;
    let mut origin = origin;
    for piece in chunks(text.as_str()) {
        // Item::new only refuses zero-length content; chunks are never empty.
        if let Some(piece) = Item::new(
            ID::new(id.client, clock),
            None,
            origin,
            None,
            right_origin,
            parent.clone(),
            parent_sub.clone(),
            ItemContent::String(piece.into()),
        ) {
            // No overflow: the pieces' lengths sum to the original item's, whose end clock the
            // decoder has already computed.
            clock += piece.len;
            origin = Some(piece.last_id());
            blocks.push_back(Block::Item(piece));
        }
    }
}
