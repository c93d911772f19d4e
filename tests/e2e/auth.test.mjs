// API keys: authentication failures, roles/permissions, the admin key API and the audit log.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, generateKeyText, keyId, KEY_RE } from './lib/rtad.mjs';
import { assertError, assertValidation, eventually, ISO_RE } from './lib/check.mjs';

describe('authentication', () => {
    let rtad;
    before(async () => { rtad = await startRtad(); });
    after(async () => { await rtad?.stop(); });

    it('no key -> 401 missing_api_key', async () => {
        assertError(await rtad.api('GET', '/v1/protocols'), 401, 'missing_api_key');
        assertError(await rtad.api('POST', '/v1/ingest', { body: { tvl: [] } }), 401,
            'missing_api_key');
        assertError(await rtad.api('GET', '/v1/admin/keys'), 401, 'missing_api_key');
    });

    it('401 answers carry a WWW-Authenticate: Bearer challenge', async () => {
        const r = await rtad.api('GET', '/v1/protocols');
        assert.equal(r.status, 401);
        assert.match(r.headers.get('www-authenticate') || '', /^Bearer/i);
    });

    it('garbage keys -> 401 malformed_api_key', async () => {
        for (const k of ['hello', 'rta_', 'rta_kzzzz_abc', generateKeyText().slice(0, 60),
            generateKeyText() + 'x', generateKeyText().replace('rta_', 'rtb_')]) {
            assertError(await rtad.api('GET', '/v1/protocols', { key: k }), 401,
                'malformed_api_key');
        }
        // A non-Bearer scheme is not a key either.
        const r = await rtad.api('GET', '/v1/protocols',
            { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
        assert.equal(r.status, 401, r.text);
        assert.ok(['malformed_api_key', 'missing_api_key'].includes(r.json?.error?.code), r.text);
    });

    it('well-formed unknown key -> 401 invalid_api_key', async () => {
        assertError(await rtad.api('GET', '/v1/protocols', { key: generateKeyText() }), 401,
            'invalid_api_key');
    });

    it('known id with a wrong secret -> 401 invalid_api_key', async () => {
        const k = await makeKey(rtad, { user: 'wrong-secret' });
        const other = generateKeyText().slice(22);
        const forged = `rta_${k.id}_${other}`;
        assertError(await rtad.api('GET', '/v1/protocols', { key: forged }), 401,
            'invalid_api_key');
        // the real one works
        const ok = await rtad.api('GET', '/v1/protocols', { key: k.key });
        assert.equal(ok.status, 200, ok.text);
    });

    it('the admin key from RTA_ADMIN_KEY works', async () => {
        const r = await rtad.api('GET', '/v1/admin/keys', { key: rtad.adminKey });
        assert.equal(r.status, 200, r.text);
    });

    it('probes need no key', async () => {
        assert.equal((await rtad.api('GET', '/healthz')).status, 200);
        assert.equal((await rtad.api('GET', '/readyz')).status, 200);
    });
});

describe('roles and permissions', () => {
    let rtad;
    const keys = {};
    before(async () => {
        rtad = await startRtad();
        for (const role of ['admin', 'user', 'ingest', 'reader']) {
            keys[role] = (await makeKey(rtad, { user: `u-${role}`, role, tier: 'enterprise' })).key;
        }
        // something to read
        const r = await rtad.api('POST', '/v1/ingest', { key: rtad.adminKey,
            body: { tvl: [{ protocol: 'perm-proto', chain: 'ethereum', tvl: 100 }] } });
        assert.equal(r.status, 200, r.text);
    });
    after(async () => { await rtad?.stop(); });

    const ingestBody = { tvl: [{ protocol: 'perm-proto', chain: 'ethereum', tvl: 200 }] };
    const queryBody = { limit: 5 };
    // [role, method, path, body, permission needed, allowed?]
    const matrix = [
        ['user', 'GET', '/v1/protocols', undefined, 'read', true],
        ['user', 'POST', '/v1/query/advanced', queryBody, 'query', true],
        ['user', 'POST', '/v1/ingest', ingestBody, 'ingest', false],
        ['user', 'GET', '/v1/admin/keys', undefined, 'admin', false],
        ['ingest', 'GET', '/v1/protocols', undefined, 'read', true],
        ['ingest', 'GET', '/v1/events', undefined, 'read', true],
        ['ingest', 'POST', '/v1/ingest', ingestBody, 'ingest', true],
        ['ingest', 'POST', '/v1/query/advanced', queryBody, 'query', false],
        ['ingest', 'GET', '/v1/admin/keys', undefined, 'admin', false],
        ['reader', 'GET', '/v1/protocols', undefined, 'read', true],
        ['reader', 'GET', '/v1/chains', undefined, 'read', true],
        ['reader', 'POST', '/v1/query/advanced', queryBody, 'query', false],
        ['reader', 'POST', '/v1/ingest', ingestBody, 'ingest', false],
        ['reader', 'GET', '/v1/admin/audit', undefined, 'admin', false],
        ['admin', 'GET', '/v1/admin/keys', undefined, 'admin', true],
        ['admin', 'POST', '/v1/ingest', ingestBody, 'ingest', true],
        ['admin', 'POST', '/v1/query/advanced', queryBody, 'query', true],
        ['admin', 'GET', '/v1/events', undefined, 'read', true],
    ];
    for (const [role, method, path, body, perm, allowed] of matrix) {
        it(`${role} ${method} ${path} -> ${allowed ? 'allowed' : `403 (needs ${perm})`}`,
            async () => {
                const r = await rtad.api(method, path, { key: keys[role], body });
                if (allowed) {
                    assert.ok(r.status >= 200 && r.status < 300,
                        `expected success, got ${r.status} ${r.text}`);
                } else {
                    const err = assertError(r, 403, 'forbidden');
                    assert.equal(err.details?.required, perm,
                        `details.required should name "${perm}": ${r.text}`);
                }
            });
    }
});

describe('admin key API', () => {
    let rtad;
    before(async () => { rtad = await startRtad(); });
    after(async () => { await rtad?.stop(); });

    it('POST /v1/admin/keys creates a key, shown once, in the documented format', async () => {
        const before = Date.now();
        const r = await rtad.api('POST', '/v1/admin/keys', { key: rtad.adminKey,
            body: { user: 'alice', tier: 'pro', role: 'reader', label: 'dashboard' } });
        assert.equal(r.status, 201, r.text);
        const k = r.json;
        assert.match(k.key, KEY_RE);
        assert.equal(k.key.length, 65);
        assert.match(k.id, /^k[0-9a-f]{16}$/);
        assert.ok(k.key.startsWith(`rta_${k.id}_`), 'key text must embed its id');
        assert.equal(k.user, 'alice');
        assert.equal(k.tier, 'pro');
        assert.equal(k.role, 'reader');
        assert.equal(k.label, 'dashboard');
        assert.match(k.createdAt, ISO_RE);
        const created = Date.parse(k.createdAt);
        assert.ok(created >= before - 2000 && created <= Date.now() + 2000,
            `createdAt ${k.createdAt} is not now`);
        // the new key works
        const use = await rtad.api('GET', '/v1/protocols', { key: k.key });
        assert.equal(use.status, 200, use.text);
    });

    it('defaults: tier free, role user', async () => {
        const r = await rtad.api('POST', '/v1/admin/keys',
            { key: rtad.adminKey, body: { user: 'bob' } });
        assert.equal(r.status, 201, r.text);
        assert.equal(r.json.tier, 'free');
        assert.equal(r.json.role, 'user');
        assert.equal(Number(r.headers.get('ratelimit-limit')) > 0, true);
    });

    it('two keys never share id or secret', async () => {
        const a = await makeKey(rtad, { user: 'twin' });
        const b = await makeKey(rtad, { user: 'twin' });
        assert.notEqual(a.id, b.id);
        assert.notEqual(a.key.slice(22), b.key.slice(22));
    });

    it('bad tier / role / missing user -> 400 validation_failed naming the field', async () => {
        assertValidation(await rtad.api('POST', '/v1/admin/keys',
            { key: rtad.adminKey, body: { user: 'x', tier: 'platinum' } }), '$.tier');
        assertValidation(await rtad.api('POST', '/v1/admin/keys',
            { key: rtad.adminKey, body: { user: 'x', role: 'superuser' } }), '$.role');
        assertValidation(await rtad.api('POST', '/v1/admin/keys',
            { key: rtad.adminKey, body: { tier: 'free' } }), '$.user');
        assertValidation(await rtad.api('POST', '/v1/admin/keys',
            { key: rtad.adminKey, body: { user: 42 } }), '$.user');
        assertValidation(await rtad.api('POST', '/v1/admin/keys',
            { key: rtad.adminKey, body: { user: 'x', bogus: 1 } }), '$.bogus', 'unknown_field');
    });

    it('GET /v1/admin/keys lists keys without secrets or hashes', async () => {
        const k = await makeKey(rtad, { user: 'listed', tier: 'enterprise', role: 'ingest',
            label: 'lbl' });
        const r = await rtad.api('GET', '/v1/admin/keys', { key: rtad.adminKey });
        assert.equal(r.status, 200, r.text);
        assert.ok(Array.isArray(r.json.data));
        const row = r.json.data.find((x) => x.id === k.id);
        assert.ok(row, 'new key not listed');
        assert.deepEqual(
            { user: row.user, tier: row.tier, role: row.role, label: row.label },
            { user: 'listed', tier: 'enterprise', role: 'ingest', label: 'lbl' });
        assert.equal(row.createdAt, k.createdAt);
        assert.equal(row.revokedAt, null);
        const secret = k.key.slice(22);
        assert.ok(!r.text.includes(secret), 'listing leaks a secret');
        assert.ok(!r.text.includes(rtad.adminKey.slice(22)), 'listing leaks admin secret');
        for (const x of r.json.data) {
            for (const f of Object.keys(x)) {
                assert.ok(!/secret|hash|^key$/i.test(f), `listing has field ${f}`);
            }
        }
    });

    it('DELETE revokes; the key then gets 401 revoked_api_key; unknown id -> 404', async () => {
        const k = await makeKey(rtad, { user: 'soon-gone' });
        assert.equal((await rtad.api('GET', '/v1/protocols', { key: k.key })).status, 200);
        const d = await rtad.api('DELETE', `/v1/admin/keys/${k.id}`, { key: rtad.adminKey });
        assert.equal(d.status, 200, d.text);
        assert.equal(d.json.id, k.id);
        assert.match(d.json.revokedAt, ISO_RE);
        assertError(await rtad.api('GET', '/v1/protocols', { key: k.key }), 401,
            'revoked_api_key');
        const list = await rtad.api('GET', '/v1/admin/keys', { key: rtad.adminKey });
        const row = list.json.data.find((x) => x.id === k.id);
        assert.equal(row.revokedAt, d.json.revokedAt);
        assertError(await rtad.api('DELETE', `/v1/admin/keys/k${'0'.repeat(16)}`,
            { key: rtad.adminKey }), 404, 'key_not_found');
    });

    it('a non-admin key cannot create keys', async () => {
        const k = await makeKey(rtad, { user: 'plain', role: 'user' });
        const r = await rtad.api('POST', '/v1/admin/keys', { key: k.key, body: { user: 'evil' } });
        assertError(r, 403, 'forbidden');
    });
});

describe('audit log', () => {
    let rtad;
    before(async () => { rtad = await startRtad(); });
    after(async () => { await rtad?.stop(); });

    it('key create / revoke / ingest are recorded with actor, target and request id',
        async () => {
            const reqId = 'audit-create-' + Date.now();
            const c = await rtad.api('POST', '/v1/admin/keys', { key: rtad.adminKey,
                body: { user: 'audited' }, headers: { 'x-request-id': reqId } });
            assert.equal(c.status, 201, c.text);
            assert.equal(c.headers.get('x-request-id'), reqId);
            const revId = 'audit-revoke-' + Date.now();
            const d = await rtad.api('DELETE', `/v1/admin/keys/${c.json.id}`,
                { key: rtad.adminKey, headers: { 'x-request-id': revId } });
            assert.equal(d.status, 200, d.text);
            const ingId = 'audit-ingest-' + Date.now();
            const i = await rtad.api('POST', '/v1/ingest', { key: rtad.adminKey,
                headers: { 'x-request-id': ingId },
                body: { tvl: [{ protocol: 'audit-proto', chain: 'ethereum', tvl: 5 }] } });
            assert.equal(i.status, 200, i.text);

            // audit writes may be asynchronous: allow them a moment to land
            const r = await eventually(async () => {
                const a = await rtad.api('GET', '/v1/admin/audit', { key: rtad.adminKey });
                assert.equal(a.status, 200, a.text);
                assert.ok(Array.isArray(a.json.data), a.text);
                assert.ok(a.json.data.some((e) => e.requestId === ingId), a.text);
                return a;
            }).catch(async () => rtad.api('GET', '/v1/admin/audit', { key: rtad.adminKey }));
            assert.equal(r.status, 200, r.text);
            const data = r.json.data;
            assert.ok(Array.isArray(data), r.text);
            const adminId = keyId(rtad.adminKey);
            const create = data.find((e) => e.action === 'key.create' && e.requestId === reqId);
            assert.ok(create, `no key.create entry with requestId ${reqId}: ${r.text}`);
            assert.equal(create.target, c.json.id);
            assert.equal(create.actor, adminId);
            assert.equal(create.sourceIp, '127.0.0.1');
            assert.match(create.time, ISO_RE);
            assert.ok(create.id !== undefined && create.id !== null);
            assert.ok(!JSON.stringify(create).includes(c.json.key.slice(22)),
                'audit entry leaks the new secret');
            const revoke = data.find((e) => e.action === 'key.revoke' && e.requestId === revId);
            assert.ok(revoke, `no key.revoke entry: ${r.text}`);
            assert.equal(revoke.target, c.json.id);
            const ing = data.find((e) => e.action === 'ingest.batch' && e.requestId === ingId);
            assert.ok(ing, `no ingest.batch entry: ${r.text}`);
            // newest first
            const times = data.map((e) => Date.parse(e.time));
            for (let k = 1; k < times.length; k++) {
                assert.ok(times[k - 1] >= times[k], 'audit entries are not newest first');
            }
            assert.ok(data.indexOf(ing) < data.indexOf(revoke));
            assert.ok(data.indexOf(revoke) < data.indexOf(create));
        });

    it('filters by action and actor; paginates with limit and cursor', async () => {
        const made = [];
        for (let i = 0; i < 5; i++) made.push((await makeKey(rtad, { user: `page-${i}` })).id);
        const r = await eventually(async () => {
            const a = await rtad.api('GET', '/v1/admin/audit?action=key.create',
                { key: rtad.adminKey });
            assert.equal(a.status, 200, a.text);
            assert.ok(a.json.data.some((e) => e.target === made[4]), a.text);
            return a;
        });
        assert.ok(r.json.data.length >= 5);
        assert.ok(r.json.data.every((e) => e.action === 'key.create'), r.text);

        const adminId = keyId(rtad.adminKey);
        const byActor = await rtad.api('GET', `/v1/admin/audit?actor=${adminId}`,
            { key: rtad.adminKey });
        assert.equal(byActor.status, 200, byActor.text);
        assert.ok(byActor.json.data.length > 0);
        assert.ok(byActor.json.data.every((e) => e.actor === adminId));
        const nobody = await rtad.api('GET', `/v1/admin/audit?actor=k${'f'.repeat(16)}`,
            { key: rtad.adminKey });
        assert.equal(nobody.status, 200);
        assert.deepEqual(nobody.json.data, []);

        // walk pages of 2
        const seen = [];
        let cursor = null;
        for (let page = 0; page < 20; page++) {
            const q = `/v1/admin/audit?action=key.create&limit=2${cursor ? `&cursor=${
                encodeURIComponent(cursor)}` : ''}`;
            const p = await rtad.api('GET', q, { key: rtad.adminKey });
            assert.equal(p.status, 200, p.text);
            assert.ok(p.json.data.length <= 2, `limit=2 returned ${p.json.data.length}`);
            seen.push(...p.json.data.map((e) => e.id));
            assert.ok(p.json.meta && 'nextCursor' in p.json.meta, `meta.nextCursor: ${p.text}`);
            cursor = p.json.meta.nextCursor;
            if (!cursor) break;
        }
        assert.equal(new Set(seen).size, seen.length, 'pages overlap');
        assert.deepEqual(seen, r.json.data.map((e) => e.id), 'pages differ from the full list');
        for (const id of made) {
            assert.ok(r.json.data.some((e) => e.target === id), `no audit for ${id}`);
        }
    });

    it('bad limit -> 400', async () => {
        const r = await rtad.api('GET', '/v1/admin/audit?limit=0', { key: rtad.adminKey });
        assert.equal(r.status, 400, r.text);
        const r2 = await rtad.api('GET', '/v1/admin/audit?limit=abc', { key: rtad.adminKey });
        assert.equal(r2.status, 400, r2.text);
    });
});
