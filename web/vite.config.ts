import { svelte } from '@sveltejs/vite-plugin-svelte'
import { type Plugin, defineConfig } from 'vite'

/** The meta tag that names the mode a page was built in (scripts/verify-web.cjs reads it). */
export const MODE_META = 'tachikoma-build-mode'

/** Stamps the build's mode into index.html, so an artifact of another mode can be told apart
 * from its content as well as from its directory. */
function stampMode(mode: string): Plugin {
  return {
    name: 'tachikoma-build-mode',
    transformIndexHtml: () => [
      { tag: 'meta', attrs: { name: MODE_META, content: mode }, injectTo: 'head' },
    ],
  }
}

// `base: './'` makes every asset URL in dist/<mode>/index.html relative, so Electron can
// load the page from file:// (loadFile) as well as from a web server. Each mode writes its
// own directory, so building one mode never overwrites another's page (build.toml).
export default defineConfig(({ mode }) => ({
  base: './',
  plugins: [svelte(), stampMode(mode)],
  build: {
    outDir: `dist/${mode}`,
    emptyOutDir: true,
    // Electron's Chromium runs modern JS; no legacy transforms needed.
    target: 'es2022',
  },
}))
