import { createRequire } from 'node:module';
import type { ValidateFunction } from 'ajv';

const require = createRequire(import.meta.url);

/**
 * Compiles a report's JSON Schema. ajv is loaded at the first call, not when the CLI starts: only the commands that
 * read a report back need it, and loading it was ~7 % of every `tdxsim` process's start-up CPU.
 */
export function compileSchema(schema: object): ValidateFunction {
  const { Ajv } = require('ajv') as typeof import('ajv');
  return new Ajv({ allErrors: false, strict: true }).compile(schema);
}
