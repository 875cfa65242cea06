// Builds the dashboard into dist/, which the gateway embeds (gateway/src/api/dashboard.rs).
// Everything is bundled: the page loads nothing from the internet.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // One script and one stylesheet: fewer requests, and the embedded file list stays small.
    cssCodeSplit: false,
    sourcemap: false,
    target: 'es2020',
  },
  server: {
    // `npm run dev` against a gateway on the default port: API calls go to it.
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
});
