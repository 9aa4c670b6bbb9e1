//! Validators that walk untrusted Yjs bytes before `yrs` sees them.
//!
//! `validate_update_v1` reads a v1 update field by field in the same order and with the same
//! widths as yrs 0.28.1 (`Update::decode`, `Update::decode_block`, `ItemContent::decode`,
//! `Any::decode`, `IdSet::decode`), but:
//! - without recursion: nested `Any` values are walked with an explicit stack and a hard depth
//!   limit (yrs recurses once per level and aborts the process with a stack overflow at a few
//!   thousand levels, which `catch_unwind` cannot stop);
//! - without allocating from claimed lengths: every count is checked against the bytes that are
//!   left (yrs pre-allocates from such counts), and the counts of all open `Any` containers
//!   together must fit in the remaining input;
//! - more strictly where yrs would panic (debug) or silently wrap (release): `u32` fields above
//!   `u32::MAX`, clock ranges that overflow `u32`, varints longer than needed or wider than
//!   64 bits, varInts whose magnitude reaches 2^63, client ids of 2^53 and above (yrs
//!   `debug_assert!`s and then masks them, aliasing another client; found by fuzzing);
//! - more strictly where yrs and Yjs read the same bytes differently, so the server and its
//!   clients would disagree about the document (see [`ProtocolError::Unsupported`]):
//!   `ContentJSON` (ref 2: yrs reads `len + 1` strings, Yjs reads `len`), `YXmlHook` type refs
//!   (Yjs writes a hook name, yrs does not read it), type refs Yjs does not know (7 weak links,
//!   9, 15), info bytes with bit 4 set (yrs masks the content ref with 4 bits, Yjs with 5), the
//!   same client listed twice (yrs appends, Yjs replaces), and trailing bytes;
//! - embedded JSON (ContentEmbed, ContentFormat) is depth-checked without recursion, then parsed
//!   the way yrs parses it into `Any`, so text yrs would refuse is refused here.
//!
//! Contract (checked by the `validate_update` fuzz target and `tests/it/no_panic.rs`): whatever this
//! accepts, `yrs::Update::decode_v1` decodes without error or panic.
//!
//! What this does not do: check causal consistency (missing origins, gaps), which yrs handles as
//! pending structs, and it does not integrate anything. A validated update can still make yrs
//! panic during *integration* (known upstream issues); the caller must contain that.

use crate::ProtocolError;
use crate::lib0::{Reader, check_count};

/// Limits applied while walking an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateLimits {
    /// Maximum nesting of `Any`/JSON values (arrays and maps inside each other).
    pub max_depth: usize,
    /// Maximum number of structs (items, GC and skip ranges) in one update.
    pub max_structs: u64,
}

impl Default for UpdateLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_structs: 10_000_000,
        }
    }
}

/// What the walk counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// Items, GC and skip structs.
    pub structs: u64,
    /// Ranges in the delete set.
    pub delete_ranges: u64,
    /// Deepest `Any` / JSON nesting met (0 when there was none).
    pub max_depth_seen: usize,
    /// Client sections in the struct part.
    pub clients: u64,
    /// Subdocument items (ContentDoc). yrs 0.28.1 never frees a `Doc` that has integrated a
    /// subdocument (see tests/yrs_subdoc_leak.rs), so a server may want to refuse them.
    pub subdocs: u64,
}

// Struct info values / content refs (yrs `block.rs`, Yjs `encoding.js`).
const INFO_GC: u8 = 0;
const INFO_SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;
/// yrs masks the content ref with 4 bits, Yjs with 5: bit 4 is where they disagree.
const REF_BIT4: u8 = 0b0001_0000;

const REF_DELETED: u8 = 1;
const REF_JSON: u8 = 2;
const REF_BINARY: u8 = 3;
const REF_STRING: u8 = 4;
const REF_EMBED: u8 = 5;
const REF_FORMAT: u8 = 6;
const REF_TYPE: u8 = 7;
const REF_ANY: u8 = 8;
const REF_DOC: u8 = 9;

// Shared type refs inside ContentType.
const TYPE_ARRAY: u8 = 0;
const TYPE_MAP: u8 = 1;
const TYPE_TEXT: u8 = 2;
const TYPE_XML_ELEMENT: u8 = 3;
const TYPE_XML_FRAGMENT: u8 = 4;
const TYPE_XML_HOOK: u8 = 5;
const TYPE_XML_TEXT: u8 = 6;

/// Smallest possible struct: an info byte plus a one-byte length (GC/skip) or more (items).
const MIN_STRUCT_BYTES: usize = 2;

/// Checks that a v1 update can be handed to `yrs` without overflowing the stack, allocating
/// absurd amounts, or hitting a decoder panic, and that yrs and Yjs read it the same way.
pub fn validate_update_v1(
    update: &[u8],
    limits: &UpdateLimits,
) -> Result<UpdateStats, ProtocolError> {
    let mut r = Reader::new(update);
    let mut stats = UpdateStats::default();

    // Structs: varUint(clients) • clients × (varUint(n) • varUint(client) • varUint(clock) • n structs)
    // A client section is at least 3 bytes (count, client, clock).
    let clients = read_count_u32(&mut r, 3)?;
    stats.clients = u64::from(clients);
    // Grows only with sections actually read, so it is bounded by the input.
    let mut seen_clients: Vec<u64> = Vec::new();
    for _ in 0..clients {
        let structs = read_count_u32(&mut r, MIN_STRUCT_BYTES)?;
        stats.structs = stats.structs.saturating_add(u64::from(structs));
        if stats.structs > limits.max_structs {
            return Err(ProtocolError::LimitExceeded(
                "too many structs in one update",
            ));
        }
        let client = read_client_id(&mut r)?;
        seen_clients.push(client);
        let mut clock = r.read_var_u32()?;
        for _ in 0..structs {
            let len = walk_struct(&mut r, limits, &mut stats)?;
            // yrs does `clock += block.len()` on a u32: overflow panics with debug assertions.
            clock = clock
                .checked_add(len)
                .ok_or(ProtocolError::MalformedUpdate(
                    "struct clock range overflows u32",
                ))?;
        }
    }
    if has_duplicates(&mut seen_clients) {
        return Err(ProtocolError::Unsupported(
            "a client has two struct sections (yrs appends them, Yjs keeps only the last)",
        ));
    }

    // Delete set: varUint(clients) • clients × (varUint(client) • varUint(n) • n × (clock, len))
    let ds_clients = read_count_u32(&mut r, 2)?;
    let mut seen_ds: Vec<u64> = Vec::new();
    for _ in 0..ds_clients {
        let client = read_client_id(&mut r)?;
        seen_ds.push(client);
        let ranges = read_count_u32(&mut r, 2)?;
        for _ in 0..ranges {
            let clock = r.read_var_u32()?;
            let len = r.read_var_u32()?;
            // yrs builds `clock..(clock + len)` on u32.
            clock
                .checked_add(len)
                .ok_or(ProtocolError::MalformedUpdate("delete range overflows u32"))?;
            stats.delete_ranges += 1;
        }
    }
    if has_duplicates(&mut seen_ds) {
        return Err(ProtocolError::Unsupported(
            "a client has two delete-set entries (yrs keeps only the last, Yjs applies both)",
        ));
    }

    if !r.is_empty() {
        return Err(ProtocolError::TrailingBytes(r.remaining()));
    }
    Ok(stats)
}

/// Checks a state vector: `varUint(n) • n × (varUint(client) • varUint(clock))`.
/// Same widths as yrs (`u32` count and clocks, `u64` client ids); the count must fit in the
/// input because yrs reserves a hash map of that size before reading.
pub fn validate_state_vector(sv: &[u8]) -> Result<(), ProtocolError> {
    let mut r = Reader::new(sv);
    let n = read_count_u32(&mut r, 2)?;
    for _ in 0..n {
        read_client_id(&mut r)?;
        r.read_var_u32()?;
    }
    if !r.is_empty() {
        return Err(ProtocolError::TrailingBytes(r.remaining()));
    }
    Ok(())
}

/// One struct; returns its clock length (0 for empty items, which yrs drops).
fn walk_struct(
    r: &mut Reader<'_>,
    limits: &UpdateLimits,
    stats: &mut UpdateStats,
) -> Result<u32, ProtocolError> {
    let info = r.read_u8()?;
    match info {
        INFO_GC | INFO_SKIP => {
            let len = r.read_var_u32()?;
            if len == 0 {
                return Err(ProtocolError::MalformedUpdate(
                    "GC or skip struct of length 0",
                ));
            }
            Ok(len)
        }
        _ => walk_item(r, info, limits, stats),
    }
}

fn walk_item(
    r: &mut Reader<'_>,
    info: u8,
    limits: &UpdateLimits,
    stats: &mut UpdateStats,
) -> Result<u32, ProtocolError> {
    let content_ref = info & 0x0f;
    if info & REF_BIT4 != 0 || !(REF_DELETED..=REF_DOC).contains(&content_ref) {
        return Err(ProtocolError::UnknownContentRef(info));
    }
    if info & HAS_ORIGIN != 0 {
        read_id(r)?;
    }
    if info & HAS_RIGHT_ORIGIN != 0 {
        read_id(r)?;
    }
    if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
        // Parent: named root type or the ID of the item holding the parent type.
        match r.read_var_u32()? {
            1 => {
                read_string(r)?;
            }
            0 => read_id(r)?,
            _ => {
                return Err(ProtocolError::MalformedUpdate(
                    "parent info is neither 0 nor 1",
                ));
            }
        }
        if info & HAS_PARENT_SUB != 0 {
            read_string(r)?;
        }
    }
    match content_ref {
        REF_DELETED => r.read_var_u32(),
        REF_JSON => Err(ProtocolError::Unsupported(
            "ContentJSON (yrs 0.28.1 reads len+1 strings where Yjs reads len)",
        )),
        REF_BINARY => {
            read_buf(r)?;
            Ok(1)
        }
        REF_STRING => {
            let s = read_string(r)?;
            // Item length is the UTF-16 length, as in yrs and Yjs.
            let units = s.encode_utf16().count();
            u32::try_from(units).map_err(|_| ProtocolError::ValueOutOfRange {
                value: units as u64,
                max: u64::from(u32::MAX),
            })
        }
        REF_EMBED => {
            read_json(r, limits, stats)?;
            Ok(1)
        }
        REF_FORMAT => {
            read_string(r)?;
            read_json(r, limits, stats)?;
            Ok(1)
        }
        REF_TYPE => {
            // yrs reads the type ref as a raw byte; Yjs as a varUint (same byte below 128).
            match r.read_u8()? {
                TYPE_ARRAY | TYPE_MAP | TYPE_TEXT | TYPE_XML_FRAGMENT | TYPE_XML_TEXT => {}
                TYPE_XML_ELEMENT => {
                    read_string(r)?;
                }
                TYPE_XML_HOOK => {
                    return Err(ProtocolError::Unsupported(
                        "YXmlHook (Yjs writes a hook name that yrs 0.28.1 does not read)",
                    ));
                }
                other => return Err(ProtocolError::UnknownTypeRef(other)),
            }
            Ok(1)
        }
        REF_ANY => {
            let n = read_count_u32(r, 1)?;
            walk_any_values(r, u64::from(n), limits, stats)?;
            Ok(n)
        }
        REF_DOC => {
            stats.subdocs += 1;
            // Subdocument: guid string + an Any of options.
            read_string(r)?;
            walk_any_values(r, 1, limits, stats)?;
            Ok(1)
        }
        _ => Err(ProtocolError::UnknownContentRef(info)),
    }
}

/// An open `Any` array or map and how many elements it still owes.
#[derive(Debug)]
struct Open {
    is_map: bool,
    left: u64,
}

impl Open {
    /// Fewest bytes one element can take: a tag byte, plus a key length byte for map entries.
    fn min_element_bytes(&self) -> u64 {
        if self.is_map { 2 } else { 1 }
    }
}

/// Walks `count` consecutive `Any` values (lib0 `readAny`) without recursion.
///
/// `reserved` is the number of bytes the elements announced by every open container still need
/// at minimum; each new container must fit on top of it, so the counts of all nested containers
/// together can never exceed the input length (yrs reserves memory for each of them).
fn walk_any_values(
    r: &mut Reader<'_>,
    count: u64,
    limits: &UpdateLimits,
    stats: &mut UpdateStats,
) -> Result<(), ProtocolError> {
    check_count(count, 1, r.remaining())?;
    let mut reserved: u64 = count;
    // stack[0] is the sequence itself (depth 0); stack[d] is a container at depth d.
    let mut stack: Vec<Open> = vec![Open {
        is_map: false,
        left: count,
    }];
    while let Some(top) = stack.last_mut() {
        if top.left == 0 {
            stack.pop();
            continue;
        }
        top.left -= 1;
        reserved -= top.min_element_bytes();
        if top.is_map {
            read_string(r)?;
        }
        let tag = r.read_u8()?;
        let is_map = match tag {
            // undefined, null, false, true
            127 | 126 | 121 | 120 => continue,
            125 => {
                r.read_var_i64()?;
                continue;
            }
            124 => {
                r.read_exact(4)?;
                continue;
            }
            123 | 122 => {
                r.read_exact(8)?;
                continue;
            }
            119 => {
                read_string(r)?;
                continue;
            }
            116 => {
                read_buf(r)?;
                continue;
            }
            118 => true,
            117 => false,
            other => return Err(ProtocolError::UnknownAnyTag(other)),
        };
        // yrs reads container lengths as usize (a u64 varUint).
        let len = r.read_var_u64()?;
        let open = Open { is_map, left: len };
        let need = len.saturating_mul(open.min_element_bytes());
        if reserved.saturating_add(need) > r.remaining() as u64 {
            return Err(ProtocolError::CountTooLarge {
                count: len,
                remaining: r.remaining(),
            });
        }
        let depth = stack.len();
        if depth > limits.max_depth {
            return Err(ProtocolError::TooDeep {
                limit: limits.max_depth,
            });
        }
        stats.max_depth_seen = stats.max_depth_seen.max(depth);
        reserved += need;
        stack.push(open);
    }
    Ok(())
}

/// Client ids are 53-bit (JavaScript safe integers). yrs 0.28.1 `ClientID::new` only
/// `debug_assert!`s this and otherwise masks the high bits away, so a larger id would panic a
/// debug build and silently alias another client in a release build.
pub(crate) const MAX_CLIENT_ID: u64 = (1 << 53) - 1;

pub(crate) fn read_client_id(r: &mut Reader<'_>) -> Result<u64, ProtocolError> {
    let id = r.read_var_u64()?;
    if id > MAX_CLIENT_ID {
        return Err(ProtocolError::ValueOutOfRange {
            value: id,
            max: MAX_CLIENT_ID,
        });
    }
    Ok(id)
}

fn read_id(r: &mut Reader<'_>) -> Result<(), ProtocolError> {
    read_client_id(r)?;
    r.read_var_u32()?;
    Ok(())
}

/// A count stored as u32 in yrs, checked against what the remaining bytes can hold.
fn read_count_u32(r: &mut Reader<'_>, min_item_bytes: usize) -> Result<u32, ProtocolError> {
    let n = r.read_var_u32()?;
    check_count(u64::from(n), min_item_bytes, r.remaining())?;
    Ok(n)
}

/// yrs `read_buf`: a u32 length then the bytes.
fn read_buf<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], ProtocolError> {
    let len = r.read_var_u32()?;
    r.read_exact(len as usize)
}

fn read_string<'a>(r: &mut Reader<'a>) -> Result<&'a str, ProtocolError> {
    std::str::from_utf8(read_buf(r)?).map_err(|_| ProtocolError::InvalidUtf8)
}

/// Embedded JSON text (ContentEmbed, ContentFormat): yrs parses it with serde_json, clients
/// with `JSON.parse`. Depth is checked first without recursion; then the syntax.
fn read_json(
    r: &mut Reader<'_>,
    limits: &UpdateLimits,
    stats: &mut UpdateStats,
) -> Result<(), ProtocolError> {
    let text = read_string(r)?;
    let depth = check_json_depth(text, limits.max_depth)?;
    stats.max_depth_seen = stats.max_depth_seen.max(depth);
    check_yrs_json(text)
}

/// Rejects JSON text nested deeper than `limit` (serde_json and JS both recurse). Returns the
/// deepest nesting seen. Counts brackets outside strings only; it does not check the syntax.
pub(crate) fn check_json_depth(text: &str, limit: usize) -> Result<usize, ProtocolError> {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(ProtocolError::TooDeep { limit });
                }
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(max)
}

/// Full JSON syntax check without building a value. Call after [`check_json_depth`]: serde_json
/// recurses, but stops at its own limit of 128 levels, above ours.
pub(crate) fn check_json_syntax(text: &str) -> Result<(), ProtocolError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| ProtocolError::InvalidJson(e.to_string()))
}

/// JSON as yrs 0.28.1 reads it into `Any` (`Any::from_json`, serde_json into `Any`): every
/// number and string is fully parsed (serde's `IgnoredAny` skips them leniently, so it would let
/// through `1e999` or lone surrogate escapes that yrs then refuses; found by fuzzing), and
/// integers above `i64::MAX` are refused as yrs does ("out of range for i64").
fn check_yrs_json(text: &str) -> Result<(), ProtocolError> {
    serde_json::from_str::<YrsJson>(text)
        .map(|_| ())
        .map_err(|e| ProtocolError::InvalidJson(e.to_string()))
}

/// Deserializes nothing; only accepts what yrs's `Any` deserializer accepts.
struct YrsJson;

impl<'de> serde::Deserialize<'de> for YrsJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(YrsJsonVisitor)
    }
}

struct YrsJsonVisitor;

impl<'de> serde::de::Visitor<'de> for YrsJsonVisitor {
    type Value = YrsJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<YrsJson, E> {
        Ok(YrsJson)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<YrsJson, E> {
        Ok(YrsJson)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<YrsJson, E> {
        if i64::try_from(v).is_err() {
            return Err(E::custom(format!(
                "integer {v} is out of range for yrs (i64)"
            )));
        }
        Ok(YrsJson)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<YrsJson, E> {
        Ok(YrsJson)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<YrsJson, E> {
        Ok(YrsJson)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<YrsJson, E> {
        Ok(YrsJson)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<YrsJson, A::Error> {
        while seq.next_element::<YrsJson>()?.is_some() {}
        Ok(YrsJson)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<YrsJson, A::Error> {
        while map.next_entry::<String, YrsJson>()?.is_some() {}
        Ok(YrsJson)
    }
}

fn has_duplicates(ids: &mut [u64]) -> bool {
    ids.sort_unstable();
    ids.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::lib0::{write_var_string, write_var_u64};

    fn lim() -> UpdateLimits {
        UpdateLimits::default()
    }

    /// One client (id 1, clock 0) with one item under root "t" whose content is `content`.
    fn one_item(info: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![1, 1, 1, 0, info, 1];
        write_var_string(&mut out, "t");
        out.extend_from_slice(content);
        out.extend_from_slice(&[0]);
        out
    }

    #[test]
    fn empty_update_is_valid() {
        assert_eq!(
            validate_update_v1(&[0, 0], &lim()),
            Ok(UpdateStats::default())
        );
        assert_eq!(
            validate_update_v1(&[], &lim()),
            Err(ProtocolError::UnexpectedEof)
        );
        assert_eq!(
            validate_update_v1(&[0, 0, 0], &lim()),
            Err(ProtocolError::TrailingBytes(1))
        );
    }

    #[test]
    fn string_item_counts_utf16_units() {
        let mut content = Vec::new();
        write_var_string(&mut content, "a😀");
        let stats = validate_update_v1(&one_item(REF_STRING, &content), &lim()).unwrap();
        assert_eq!(stats.structs, 1);
    }

    #[test]
    fn any_depth_is_limited_without_recursion() {
        let depth = 100_000;
        let mut content = vec![1];
        for _ in 0..depth {
            content.extend_from_slice(&[117, 1]);
        }
        content.push(126);
        assert_eq!(
            validate_update_v1(&one_item(REF_ANY, &content), &lim()),
            Err(ProtocolError::TooDeep { limit: 64 })
        );
        let limits = UpdateLimits {
            max_depth: usize::MAX,
            ..lim()
        };
        let stats = validate_update_v1(&one_item(REF_ANY, &content), &limits).unwrap();
        assert_eq!(stats.max_depth_seen, depth);
    }

    #[test]
    fn nested_counts_must_fit_together() {
        // [ [ x 3 ] x 3 ] needs at least 3 + 3 bytes; give it fewer.
        let content = [1, 117, 3, 117, 3, 126, 126];
        assert!(matches!(
            validate_update_v1(&one_item(REF_ANY, &content), &lim()),
            Err(ProtocolError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn huge_claimed_counts_are_refused() {
        let mut bomb = Vec::new();
        write_var_u64(&mut bomb, u64::from(u32::MAX));
        assert!(matches!(
            validate_update_v1(&bomb, &lim()),
            Err(ProtocolError::CountTooLarge { .. })
        ));
        assert!(matches!(
            validate_state_vector(&bomb),
            Err(ProtocolError::CountTooLarge { .. })
        ));
        let mut too_wide = Vec::new();
        write_var_u64(&mut too_wide, u64::from(u32::MAX) + 1);
        assert!(matches!(
            validate_state_vector(&too_wide),
            Err(ProtocolError::ValueOutOfRange { .. })
        ));
    }

    #[test]
    fn json_depth() {
        assert_eq!(check_json_depth(r#"{"a":[1,"]]]["]}"#, 2), Ok(2));
        assert_eq!(
            check_json_depth("[[[", 2),
            Err(ProtocolError::TooDeep { limit: 2 })
        );
        assert!(check_json_syntax("{\"a\":1}").is_ok());
        assert!(check_json_syntax("{\"a\":").is_err());
        // yrs refuses integers above i64::MAX; JSON.parse (and awareness) accept them.
        let big = "[18446744073709551615, 1, -5, 1.5, \"s\", null, {\"k\": true}]";
        assert!(check_json_syntax(big).is_ok());
        assert!(check_yrs_json(big).is_err());
        assert!(check_yrs_json("[9223372036854775807, -9223372036854775808, 1e300]").is_ok());
    }
}
