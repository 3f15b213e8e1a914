#!/usr/bin/env node
import { freshBundle } from './bundle.mjs';

// Errors and stack traces name the TypeScript files (the bundle has a source map).
process.setSourceMapsEnabled(true);
const bundle = freshBundle();
if (bundle) {
  await import(bundle);
} else {
  // The install is read-only and has no bundle: compile on load instead.
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
