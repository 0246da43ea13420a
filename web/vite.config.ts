import { svelte } from '@sveltejs/vite-plugin-svelte'
import { defineConfig } from 'vite'

// `base: './'` makes every asset URL in dist/index.html relative, so Electron can load
// the page from file:// (loadFile) as well as from a web server.
export default defineConfig({
  base: './',
  plugins: [svelte()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Electron's Chromium runs modern JS; no legacy transforms needed.
    target: 'es2022',
  },
})
