// Assertion helpers shared by the e2e tests.
import assert from 'node:assert/strict';

/** Asserts an error answer: status, envelope {"error":{code,message,details}}, and code. */
export function assertError(r, status, code) {
    const where = `${r.status} ${r.text.slice(0, 500)}`;
    assert.equal(r.status, status, `expected ${status} ${code}, got ${where}`);
    assert.ok(r.json && typeof r.json === 'object', `error body is not JSON: ${where}`);
    assert.ok(r.json.error && typeof r.json.error === 'object', `no "error" object: ${where}`);
    assert.equal(r.json.error.code, code, `wrong error code: ${where}`);
    assert.equal(typeof r.json.error.message, 'string', `error.message not a string: ${where}`);
    assert.ok(r.json.error.message.length > 0, `empty error.message: ${where}`);
    assert.ok('details' in r.json.error, `error.details missing: ${where}`);
    const ct = r.headers.get ? r.headers.get('content-type') : r.headers['content-type'];
    assert.match(ct || '', /^application\/json/, `error content-type: ${ct}`);
    return r.json.error;
}

/** Asserts a 400 validation_failed whose details.errors contains an entry at `path`
 *  (and with `rule` when given). Returns that entry. */
export function assertValidation(r, path, rule) {
    const err = assertError(r, 400, 'validation_failed');
    const errors = err.details && err.details.errors;
    assert.ok(Array.isArray(errors) && errors.length > 0,
        `details.errors missing or empty: ${r.text}`);
    for (const e of errors) {
        assert.equal(typeof e.path, 'string', `error entry without path: ${JSON.stringify(e)}`);
        assert.equal(typeof e.rule, 'string', `error entry without rule: ${JSON.stringify(e)}`);
        assert.equal(typeof e.message, 'string',
            `error entry without message: ${JSON.stringify(e)}`);
    }
    const hit = errors.find((e) => e.path === path && (rule === undefined || e.rule === rule));
    assert.ok(hit, `expected an error at ${path}${rule ? ` with rule ${rule}` : ''}, got ${
        JSON.stringify(errors)}`);
    return hit;
}

export const UUIDV7_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export function approx(actual, expected, eps = 1e-9, msg) {
    assert.equal(typeof actual, 'number', msg ?? `expected a number, got ${actual}`);
    assert.ok(Math.abs(actual - expected) <= eps * Math.max(1, Math.abs(expected)),
        msg ?? `expected ~${expected}, got ${actual}`);
}

/** Retries fn (which throws on failure) until it passes or timeoutMs passes. */
export async function eventually(fn, timeoutMs = 3000, stepMs = 100) {
    const end = Date.now() + timeoutMs;
    for (;;) {
        try {
            return await fn();
        } catch (e) {
            if (Date.now() >= end) throw e;
            await new Promise((r) => setTimeout(r, stepMs));
        }
    }
}
