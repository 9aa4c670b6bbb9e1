// One block card: its collaborative text, its indexing entries with their convergent status,
// the "Index"/"Re-run" controls, who else is in it, and its API calls panel.
//
// The card is created once per block id and patched on every document change; the textarea is
// bound to the block's Y.Text (rebound if the block is replaced), so re-rendering never touches
// what the user is typing.
import { getBlockText, requestIndex, removeIndex, removeBlock } from '@weaver/doc'
import { bindTextarea } from './text-binding.js'
import { CallsPanel, resultText } from './calls-panel.js'
import { h, setChildren, ago, STATUS_LABEL } from './util.js'
import { initials } from './presence.js'

// Block types other than plain text are labels set by whoever created the block (the schema
// names `vector_collection` as an example): Weaver stores the type with the block, the bridge
// indexes every block alike, and this page edits every type as text. Say so on the chip.
const TYPE_LABEL = { text: 'Text', vector_collection: 'Vector collection' }
const TYPE_HELP = 'Block type set by the application that created this block. Weaver stores it with the block; indexing and editing work the same for every type.'

export class BlockView {
  /**
   * @param {string} blockId
   * @param {{doc, api, room, setFocus: (id: string|null) => void, notify: (msg: string) => void}} ctx
   */
  constructor (blockId, ctx) {
    this.id = blockId
    this.ctx = ctx
    this.ytext = null
    this.binding = null
    this.signature = null
    this.entriesKey = null
    this._confirmTimer = null
    this.readOnly = false
    this.position = 0

    this.typeChip = h('span.chip')
    // People tell blocks apart by place and text, not by id: "Block 3", the id on hover.
    this.label = h('span.block-label', { title: `Block id: ${blockId}` })
    this.others = h('span.block-peers')
    this.deleteButton = h('button.icon-button.danger', { type: 'button', title: 'Delete this block', 'aria-label': 'Delete block', onclick: () => this._onDelete() }, 'Delete')
    this.textarea = h('textarea.block-text', { rows: 3, placeholder: 'Write something…', spellcheck: 'false', 'aria-label': 'Block content' })
    this.entries = h('ul.entries')
    this.indexInput = h('input.index-name', { type: 'text', value: 'search', 'aria-label': 'Index name', placeholder: 'index name', maxlength: 64, oninput: () => this._showIndexError(null) })
    this.indexButton = h('button.button.primary.index-button', { type: 'submit' }, 'Index')
    this.indexForm = h('form.index-form', { onsubmit: (e) => { e.preventDefault(); this._onIndex(this.indexInput.value) } },
      this.indexInput,
      this.indexButton)
    this.indexError = h('p.index-error', { role: 'alert', hidden: true })
    this.calls = new CallsPanel(ctx.api, ctx.room, blockId)

    this.el = h('article.block', { dataset: { blockId } },
      h('header.block-head', {}, this.typeChip, this.label, this.others, h('span.spacer'), this.deleteButton),
      this.textarea,
      h('section.indexing', {},
        h('div.indexing-head', {}, h('h3', {}, 'Indexing'), this.indexForm),
        this.indexError,
        this.entries),
      this.calls.el)

    this.el.addEventListener('focusin', () => ctx.setFocus(this.id))
    this.el.addEventListener('focusout', (e) => { if (!this.el.contains(e.relatedTarget)) ctx.setFocus(null) })
    this.textarea.addEventListener('input', () => this._autosize())
    this.textarea.addEventListener('weaver:remote-change', () => this._autosize())
  }

  /**
   * Patches the card from the block's typed view (an element of `readBlocks(doc).blocks`);
   * `position` is its 1-based place in the list.
   */
  update (block, position) {
    if (position !== this.position) {
      this.position = position
      this.label.textContent = `Block ${position}`
    }
    const ytext = getBlockText(this.ctx.doc, this.id)
    if (ytext !== this.ytext) {
      this.binding?.destroy()
      this.ytext = ytext
      this.binding = ytext ? bindTextarea(this.textarea, ytext) : null
      this.textarea.disabled = !ytext
      requestAnimationFrame(() => this._autosize())
    }
    this.el.dataset.type = block.type
    this.typeChip.textContent = TYPE_LABEL[block.type] ?? (block.type || 'Block')
    if (block.type === 'text') this.typeChip.removeAttribute('title')
    else this.typeChip.title = TYPE_HELP

    // Rebuild the rows only when they would change (statuses, or the "2 min ago" texts every
    // 30 s): replacing a button on every keystroke of a collaborator would swallow clicks.
    const entriesKey = JSON.stringify([block.indexingList, Math.floor(Date.now() / 30000), this.readOnly])
    if (entriesKey !== this.entriesKey) {
      this.entriesKey = entriesKey
      setChildren(this.entries, block.indexingList.length === 0
        ? h('li.entries-empty.muted', {}, 'Not indexed yet.')
        : block.indexingList.map((e) => this._renderEntry(e)))
    }

    const signature = JSON.stringify(block.indexingList.map((e) => [e.index_name, e.status, e.attempt]))
    if (signature !== this.signature) {
      this.signature = signature
      this.calls.statusesChanged()
    }
  }

  _renderEntry (e) {
    const detail = e.status === 'done'
      ? h('span.entry-result', {}, resultText(e.result) || 'indexed')
      : e.status === 'error'
        ? h('span.entry-error', { title: e.error ?? '' }, e.error ?? 'failed')
        : e.status === 'processing'
          ? h('span.muted', {}, 'the bridge is working on it…')
          : h('span.muted', {}, 'waiting for the bridge…')
    return h('li.entry', { dataset: { index: e.index_name, status: e.status, attempt: String(e.attempt) } },
      h('span.entry-name', {}, e.index_name),
      h('span.badge', { dataset: { status: e.status } }, e.status === 'processing' ? h('span.spinner') : null, STATUS_LABEL[e.status] ?? e.status),
      h('span.entry-attempt.muted', {}, e.attempt > 0 ? `attempt ${e.attempt}` : 'no attempt'),
      detail,
      e.completed_at ? h('span.entry-time.muted', { title: new Date(e.completed_at).toLocaleString() }, ago(e.completed_at)) : null,
      // A queued request is already waiting for the bridge: another click would only bump it.
      e.status === 'notStarted'
        ? null
        : h('button.link-button.rerun', { type: 'button', title: `Run ${e.index_name} again`, disabled: this.readOnly, onclick: () => this._onIndex(e.index_name) }, 'Re-run'),
      h('button.link-button.muted-button', { type: 'button', title: `Remove the ${e.index_name} entry`, disabled: this.readOnly, onclick: () => removeIndex(this.ctx.doc, this.id, e.index_name) }, 'Remove'))
  }

  /** Shows who else is focused in this block. */
  setPeers (peers) {
    this.el.classList.toggle('has-peers', peers.length > 0)
    this.el.style.setProperty('--peer-color', peers[0]?.color ?? 'transparent')
    setChildren(this.others, peers.map((p) => h('span.peer-tag', { style: { background: p.color }, title: `${p.name} is here` }, h('span.peer-initials', {}, initials(p.name)), ` ${p.name}`)))
  }

  /** Read-only access: the text can be read and copied, nothing can be changed. */
  setReadOnly (readOnly) {
    if (readOnly === this.readOnly) return
    this.readOnly = readOnly
    this.textarea.readOnly = readOnly
    this.indexInput.disabled = readOnly
    this.indexButton.disabled = readOnly
    this.deleteButton.disabled = readOnly
    this.entriesKey = null
  }

  _showIndexError (msg) {
    this.indexError.hidden = !msg
    this.indexError.textContent = msg ?? ''
    if (msg) this.indexInput.setAttribute('aria-invalid', 'true')
    else this.indexInput.removeAttribute('aria-invalid')
  }

  _onIndex (name) {
    if (this.readOnly) return
    const indexName = String(name ?? '').trim()
    if (!indexName) {
      this._showIndexError('Type an index name first (for example "search"): it says where the block\'s text is indexed.')
      this.indexInput.focus()
      return
    }
    this._showIndexError(null)
    try {
      requestIndex(this.ctx.doc, this.id, indexName, {})
    } catch (err) {
      this.ctx.notify(`Could not request indexing: ${err.message}`)
    }
  }

  _onDelete () {
    if (this.readOnly) return
    // Two clicks: the first arms the button for a few seconds, so a stray click loses nothing.
    if (!this.deleteButton.classList.contains('armed')) {
      this.deleteButton.classList.add('armed')
      this.deleteButton.textContent = 'Confirm delete'
      clearTimeout(this._confirmTimer)
      this._confirmTimer = setTimeout(() => this._disarm(), 3000)
      return
    }
    this._disarm()
    removeBlock(this.ctx.doc, this.id)
  }

  _disarm () {
    clearTimeout(this._confirmTimer)
    this.deleteButton.classList.remove('armed')
    this.deleteButton.textContent = 'Delete'
  }

  _autosize () {
    const t = this.textarea
    t.style.height = 'auto'
    t.style.height = `${Math.min(Math.max(t.scrollHeight + 2, 72), 480)}px`
  }

  focusText () {
    this.textarea.focus()
  }

  destroy () {
    this.binding?.destroy()
    this.calls.destroy()
    clearTimeout(this._confirmTimer)
    this.el.remove()
  }
}
