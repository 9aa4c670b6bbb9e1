//! The history panel: the room's versions (time, label, kind), saving a version, a read-only
//! preview of one, and restoring it after an explicit confirmation.
//!
//! Everything goes through the server's versions API (api.js); a restore arrives in this page
//! like any other edit, through the live connection. Not here: the document itself (the page
//! never edits it for a restore; the server makes the restore update).
import { h, setChildren, ago } from './util.js'

const KIND_LABEL = { auto: 'Automatic', explicit: 'Saved', 'pre-restore': 'Before restore' }

export class HistoryPanel {
  /** `el`: the panel's card; `ctx`: `{api, room, notify}`. */
  constructor (el, ctx) {
    this.el = el
    this.ctx = ctx
    this.versions = []
    this.selected = null
    this.confirming = false
    this.list = el.querySelector('#versions')
    this.preview = el.querySelector('#version-preview')
    this.note = el.querySelector('#history-note')
    this.labelInput = el.querySelector('#version-label')
    el.querySelector('#save-version').addEventListener('submit', (e) => { e.preventDefault(); this.save() })
    el.querySelector('#refresh-versions').addEventListener('click', () => this.refresh())
  }

  async refresh () {
    try {
      this.versions = await this.ctx.api.listVersions(this.ctx.room)
      this.say('')
    } catch (err) {
      this.versions = []
      this.say(err.kind === 'forbidden'
        ? 'This page\'s token does not grant the room\'s history (an admin token for the room does).'
        : err.kind === 'network' ? 'History shows once the server is reachable.' : err.message)
    }
    this.render()
  }

  async save () {
    const label = this.labelInput.value.trim()
    try {
      const v = await this.ctx.api.createVersion(this.ctx.room, label || undefined)
      this.labelInput.value = ''
      this.ctx.notify(`Saved version ${v.label ? `“${v.label}”` : v.id}.`)
    } catch (err) {
      this.ctx.notify(`Could not save a version: ${err.message}`)
    }
    await this.refresh()
  }

  async select (id) {
    this.selected = id
    this.confirming = false
    this.render()
    setChildren(this.preview, h('p.muted.small', {}, 'Loading the version…'))
    this.preview.hidden = false
    try {
      const view = await this.ctx.api.versionBlocks(this.ctx.room, id)
      if (this.selected !== id) return
      this.renderPreview(id, Array.isArray(view?.blocks) ? view.blocks : [])
    } catch (err) {
      if (this.selected === id) setChildren(this.preview, h('p.muted.small', {}, `Could not load this version: ${err.message}`))
    }
  }

  renderPreview (id, blocks) {
    const v = this.versions.find((x) => x.id === id)
    const restore = this.confirming
      ? h('div.restore-confirm', { role: 'alertdialog', 'aria-label': 'Confirm restore' },
        h('p.small', {}, 'Replace the room\'s content with this version for everyone? The current state is saved as a version first, so this can be undone.'),
        h('div.row', {},
          h('button.button.primary', { id: 'confirm-restore', type: 'button', onclick: () => this.restore(id) }, 'Restore for everyone'),
          h('button.button', { id: 'cancel-restore', type: 'button', onclick: () => { this.confirming = false; this.renderPreview(id, blocks) } }, 'Cancel')))
      : h('button.button', { id: 'restore-version', type: 'button', onclick: () => { this.confirming = true; this.renderPreview(id, blocks) } }, 'Restore…')
    setChildren(this.preview,
      h('div.preview-head', {},
        h('strong', {}, v?.label || `Version ${id}`),
        h('span.muted.small', {}, v ? new Date(v.created_at).toLocaleString() : '')),
      h('ol.preview-blocks', { 'aria-label': 'Blocks at this version' },
        blocks.length === 0
          ? h('li.muted.small', {}, 'No blocks at this version.')
          : blocks.map((b) => h('li.preview-block', { dataset: { blockId: b.id } }, b.content || h('span.muted', {}, '(empty)')))),
      restore)
  }

  async restore (id) {
    try {
      await this.ctx.api.restoreVersion(this.ctx.room, id)
      this.ctx.notify('Version restored for everyone.')
      this.selected = null
      this.confirming = false
      this.preview.hidden = true
    } catch (err) {
      this.ctx.notify(`Could not restore: ${err.message}`)
    }
    await this.refresh()
  }

  say (text) {
    this.note.textContent = text
    this.note.hidden = !text
  }

  render () {
    setChildren(this.list, this.versions.length === 0
      ? h('li.muted.small', {}, 'No versions yet. They are taken while the room is edited, or saved here.')
      : this.versions.map((v) => h('li.version', { dataset: { versionId: v.id, kind: v.kind }, 'aria-current': v.id === this.selected ? 'true' : null },
        h('button.link-button', { type: 'button', onclick: () => this.select(v.id), title: `seq ${v.seq}, ${v.bytes} bytes stored` },
          h('span.version-label', {}, v.label || KIND_LABEL[v.kind] || v.kind),
          h('span.version-time.muted.small', { title: new Date(v.created_at).toLocaleString() }, ago(v.created_at))))))
  }
}
