/** Rewrites the README's configuration table from libs/config's SETTINGS. */
import fs from 'node:fs';
import path from 'node:path';
import { settingsTableRows } from '../../libs/config/index.ts';

const README = path.resolve(import.meta.dirname, '../../README.md');
const START = '<!-- settings:start -->';
const END = '<!-- settings:end -->';

const text = fs.readFileSync(README, 'utf8');
const from = text.indexOf(START);
const to = text.indexOf(END);
if (from < 0 || to < from) throw new Error(`README.md: markers ${START} / ${END} not found`);
fs.writeFileSync(README, `${text.slice(0, from + START.length)}\n${settingsTableRows().join('\n')}\n${text.slice(to)}`);
console.log(`README.md: ${settingsTableRows().length} settings`);
