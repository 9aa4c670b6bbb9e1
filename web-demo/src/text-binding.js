// Two-way binding between a <textarea> and a Y.Text.
//
// Local input becomes the smallest Y.Text delete/insert that turns the old text into the new
// one (found by common prefix/suffix, anchored at the caret so typing "a" into "aa" is an insert
// where the user typed it). Remote changes are applied from the Y.Text event delta, and the local
// selection is moved through the same delta: an insert or delete before the caret shifts it, one
// after it leaves it alone. Because every local input event is written to the Y.Text
// synchronously, the textarea and the Y.Text are equal whenever a remote event runs, so no
// local typing can be lost. Undo/redo (Ctrl/Cmd+Z, Ctrl/Cmd+Shift+Z or Ctrl+Y) go through a
// Y.UndoManager that tracks only this binding's edits, so they never undo other people's typing
// (the browser's own undo stack is useless here: it is cleared whenever a remote change sets the
// value). Rich text and remote cursors deliberately live elsewhere.
import * as Y from 'yjs'

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff

/**
 * The minimal single splice turning `before` into `after`: `{index, remove, insert}`.
 * `caret` (the selection end in `after`) picks the position when the edit is ambiguous.
 * Never splits a UTF-16 surrogate pair.
 */
export function diffSplice (before, after, caret = after.length) {
  const minLen = Math.min(before.length, after.length)
  let suffix = 0
  const suffixLimit = Math.min(minLen, Math.max(0, after.length - caret))
  while (suffix < suffixLimit &&
    before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)) suffix++
  let prefix = 0
  const prefixLimit = minLen - suffix
  while (prefix < prefixLimit && before.charCodeAt(prefix) === after.charCodeAt(prefix)) prefix++
  // If the caret hint was wrong (e.g. a programmatic change), extend the suffix the usual way.
  while (suffix < minLen - prefix &&
    before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)) suffix++
  if (prefix > 0 && isHigh(before.charCodeAt(prefix - 1))) prefix--
  if (suffix > 0 && isLow(before.charCodeAt(before.length - suffix))) suffix--
  return {
    index: prefix,
    remove: before.length - prefix - suffix,
    insert: after.slice(prefix, after.length - suffix)
  }
}

/** Moves one caret position (in the old text) through a Y.Text delta made by someone else. */
export function transformPosition (pos, delta) {
  let oldIndex = 0
  let shift = 0
  for (const op of delta) {
    // Nothing at or after the caret moves it: an insert exactly at the caret goes after it,
    // so the local user keeps their place.
    if (oldIndex >= pos) break
    if (op.retain !== undefined) {
      oldIndex += op.retain
    } else if (op.insert !== undefined) {
      shift += typeof op.insert === 'string' ? op.insert.length : 1
    } else if (op.delete !== undefined) {
      shift -= Math.min(op.delete, pos - oldIndex)
      oldIndex += op.delete
    }
  }
  return Math.max(0, pos + shift)
}

/**
 * Binds `textarea` to `ytext`. `onLocalChange` runs after each local edit (for presence etc).
 * Returns `{ destroy() }`.
 */
export function bindTextarea (textarea, ytext, { onLocalChange } = {}) {
  const origin = { binding: 'textarea' }
  textarea.value = ytext.toString()

  const onInput = () => {
    const before = ytext.toString()
    const after = textarea.value
    if (before === after) return
    const { index, remove, insert } = diffSplice(before, after, textarea.selectionEnd)
    ytext.doc.transact(() => {
      if (remove > 0) ytext.delete(index, remove)
      if (insert.length > 0) ytext.insert(index, insert)
    }, origin)
    onLocalChange?.()
  }

  const onRemote = (event, transaction) => {
    if (transaction.origin === origin) return
    const focused = document.activeElement === textarea
    const { selectionStart, selectionEnd, selectionDirection, scrollTop } = textarea
    const delta = event.delta
    const value = ytext.toString()
    if (textarea.value === value) return
    textarea.value = value
    if (focused) {
      const start = transformPosition(selectionStart, delta)
      const end = selectionEnd === selectionStart ? start : transformPosition(selectionEnd, delta)
      textarea.setSelectionRange(start, Math.max(start, end), selectionDirection)
    }
    textarea.scrollTop = scrollTop
    textarea.dispatchEvent(new CustomEvent('weaver:remote-change'))
  }

  const undo = new Y.UndoManager(ytext, { trackedOrigins: new Set([origin]), captureTimeout: 500 })
  const history = (redo) => {
    // A read-only page has nothing of its own to undo, and must not write.
    if (textarea.readOnly) return
    const item = redo ? undo.redo() : undo.undo()
    if (item) onLocalChange?.()
  }
  const onKeyDown = (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.altKey) return
    const key = e.key.toLowerCase()
    if (key === 'z') { e.preventDefault(); history(e.shiftKey) } else if (key === 'y' && !e.shiftKey) { e.preventDefault(); history(true) }
  }
  // Undo/redo from the context menu arrive as beforeinput events.
  const onBeforeInput = (e) => {
    if (e.inputType === 'historyUndo' || e.inputType === 'historyRedo') {
      e.preventDefault()
      history(e.inputType === 'historyRedo')
    }
  }

  textarea.addEventListener('input', onInput)
  textarea.addEventListener('keydown', onKeyDown)
  textarea.addEventListener('beforeinput', onBeforeInput)
  ytext.observe(onRemote)
  return {
    undoManager: undo,
    destroy () {
      textarea.removeEventListener('input', onInput)
      textarea.removeEventListener('keydown', onKeyDown)
      textarea.removeEventListener('beforeinput', onBeforeInput)
      ytext.unobserve(onRemote)
      undo.destroy()
    }
  }
}
