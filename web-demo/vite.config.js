// Vite build of the Weaver web demo.
//
// The output in dist/ is committed and embedded into the `weaver` binary (crates/weaver/src/demo.rs),
// so file names are STABLE (no content hashes): the Rust side names each file, and
// scripts/test.sh rebuilds into a temporary directory and fails if the result differs from the
// committed dist/. See README.md for why.
import { defineConfig } from 'vite'
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

// Emits dist/sw.js from src/sw.js with the list of built files to precache and a cache name
// derived from their content, so a new build replaces the old offline copy and an unchanged
// build produces byte-identical output.
function serviceWorker () {
  return {
    name: 'weaver-service-worker',
    enforce: 'post',
    generateBundle (_options, bundle) {
      const files = Object.keys(bundle).filter((f) => !f.endsWith('.map')).sort()
      const hash = createHash('sha256')
      for (const f of files) {
        const item = bundle[f]
        hash.update(f)
        hash.update(item.type === 'chunk' ? item.code : item.source)
      }
      const template = readFileSync(path.join(here, 'src/sw.js'), 'utf8')
      const source = template
        .replace('__SHELL_FILES__', JSON.stringify(files))
        .replace('__CACHE_VERSION__', hash.digest('hex').slice(0, 16))
      this.emitFile({ type: 'asset', fileName: 'sw.js', source })
    }
  }
}

export default defineConfig({
  root: here,
  base: './',
  publicDir: false,
  plugins: [serviceWorker()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: false,
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/[name].js',
        chunkFileNames: 'assets/[name].js',
        assetFileNames: 'assets/[name][extname]'
      }
    }
  },
  server: {
    // `npm run dev`: the page talks to a weaver relay on the Yjs default port.
    proxy: {
      '/api': 'http://127.0.0.1:1234'
    }
  }
})
