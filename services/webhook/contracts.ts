import fs from 'node:fs';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { projectPath } from '../../libs/config/index.ts';
import { BadRequestError } from './body.ts';

/**
 * Payload contracts kept as files: schemas/json/<source>/<event_type>.schema.json is a JSON Schema
 * for the payload of that source's events of that type. All are compiled at start-up, so a broken
 * contract stops the service instead of failing requests, and requests never touch the disk.
 */

export const DEFAULT_CONTRACTS_DIR = projectPath('schemas', 'json');
const SUFFIX = '.schema.json';

export class PayloadContracts {
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(dir: string = DEFAULT_CONTRACTS_DIR) {
    if (!fs.existsSync(dir)) return;
    const ajv = new Ajv({ allErrors: true, strict: true });
    addFormats.default(ajv);
    for (const source of fs.readdirSync(dir, { withFileTypes: true })) {
      if (!source.isDirectory()) continue;
      for (const file of fs.readdirSync(path.join(dir, source.name))) {
        if (!file.endsWith(SUFFIX)) continue;
        const full = path.join(dir, source.name, file);
        try {
          const schema = JSON.parse(fs.readFileSync(full, 'utf8')) as object;
          this.validators.set(`${source.name}\u0000${file.slice(0, -SUFFIX.length)}`, ajv.compile(schema));
        } catch (error) {
          throw new Error(`payload contract ${full}: ${(error as Error).message}`);
        }
      }
    }
  }

  get size(): number {
    return this.validators.size;
  }

  /** Throws a 400 naming every failing path (prefixed by `at`) when a contract exists and fails. */
  check(source: string, eventType: string, payload: unknown, at: string): void {
    const validate = this.validators.get(`${source}\u0000${eventType}`);
    if (!validate || validate(payload)) return;
    const problems = (validate.errors ?? []).map((e) => {
      const missing = (e.params as { missingProperty?: string }).missingProperty;
      return { path: `${at}${e.instancePath}${missing ? `/${missing}` : ''}`, message: e.message ?? 'invalid' };
    });
    throw new BadRequestError(
      400,
      'contract_violation',
      `payload breaks the contract of ${source}/${eventType}`,
      problems,
    );
  }
}
