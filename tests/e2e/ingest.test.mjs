// POST /v1/ingest: counts, validation rules (all-or-nothing), batch and body limits.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, ingest } from './lib/rtad.mjs';
import { assertError, assertValidation } from './lib/check.mjs';

const nowS = () => Math.floor(Date.now() / 1000);

function checkCounts(j, expect) {
    for (const f of ['accepted', 'changed', 'unchanged', 'stale', 'events']) {
        assert.ok(Number.isInteger(j[f]) && j[f] >= 0, `${f} = ${j[f]}`);
    }
    assert.equal(j.changed + j.unchanged + j.stale, j.accepted,
        `changed+unchanged+stale != accepted: ${JSON.stringify(j)}`);
    if (j.events > 0) {
        assert.ok(Number.isInteger(j.firstOffset) && Number.isInteger(j.lastOffset),
            JSON.stringify(j));
        assert.equal(j.lastOffset - j.firstOffset + 1, j.events, JSON.stringify(j));
    }
    for (const [k, v] of Object.entries(expect)) {
        assert.equal(j[k], v, `${k}: ${JSON.stringify(j)}`);
    }
}

describe('ingest', () => {
    let rtad;
    let ingestKey;
    before(async () => {
        rtad = await startRtad();
        ingestKey = (await makeKey(rtad, { user: 'feeder', role: 'ingest', tier: 'enterprise' }))
            .key;
    });
    after(async () => { await rtad?.stop(); });

    it('accepts a batch and reports counts and event offsets', async () => {
        const t = nowS() - 60;
        const r = await ingest(rtad, {
            tvl: [
                { protocol: 'ing-alpha', chain: 'ethereum', tvl: 1000, timestamp: t,
                    name: 'Alpha', category: 'Dexes' },
                { protocol: 'ing-alpha', chain: 'arbitrum', tvl: 500, timestamp: t },
            ],
            prices: [{ token: 'coingecko:alpha-token', price: 1.5, timestamp: t,
                confidence: 0.9, symbol: 'ALP' }],
        }, ingestKey);
        assert.equal(r.status, 200, r.text);
        checkCounts(r.json, { accepted: 3, changed: 3, unchanged: 0, stale: 0 });
        assert.ok(r.json.events >= 1, 'a new protocol must produce a protocol_update');
        assert.ok(r.json.firstOffset >= 1);
    });

    it('the same values again are unchanged and give no events', async () => {
        const t = nowS() - 30;
        const r = await ingest(rtad, {
            tvl: [{ protocol: 'ing-alpha', chain: 'ethereum', tvl: 1000, timestamp: t }],
            prices: [{ token: 'coingecko:alpha-token', price: 1.5, timestamp: t }],
        }, ingestKey);
        assert.equal(r.status, 200, r.text);
        checkCounts(r.json, { accepted: 2, changed: 0, unchanged: 2, stale: 0, events: 0 });
    });

    it('an older timestamp than the current value is stale and changes nothing', async () => {
        const r = await ingest(rtad, {
            tvl: [{ protocol: 'ing-alpha', chain: 'ethereum', tvl: 999999,
                timestamp: nowS() - 86400 }],
        }, ingestKey);
        assert.equal(r.status, 200, r.text);
        checkCounts(r.json, { accepted: 1, changed: 0, unchanged: 0, stale: 1, events: 0 });
        const p = await rtad.api('GET', '/v1/protocols/ing-alpha', { key: ingestKey });
        assert.equal(p.status, 200, p.text);
        const eth = p.json.chains.find((c) => c.chain === 'ethereum');
        assert.equal(eth.tvl, 1000);
    });

    it('accepts ISO-8601 timestamps with a zone and no timestamp at all', async () => {
        const iso = new Date(Date.now() - 10000).toISOString();
        const off = new Date(Date.now() - 5000).toISOString().replace('Z', '+00:00');
        const r = await ingest(rtad, { tvl: [
            { protocol: 'ing-iso', chain: 'ethereum', tvl: 1, timestamp: iso },
            { protocol: 'ing-iso', chain: 'base', tvl: 2, timestamp: off },
            { protocol: 'ing-iso', chain: 'optimism', tvl: 3 },
        ] }, ingestKey);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.accepted, 3);
    });

    it('accepts tvl 0 and a timestamp 200 s in the future', async () => {
        const r = await ingest(rtad, { tvl: [
            { protocol: 'ing-edge', chain: 'ethereum', tvl: 0, timestamp: nowS() + 200 },
        ] }, ingestKey);
        assert.equal(r.status, 200, r.text);
    });

    const good = { protocol: 'ing-ok', chain: 'ethereum', tvl: 1 };
    const table = [
        ['upper-case protocol slug', { tvl: [{ ...good, protocol: 'Uniswap' }] },
            '$.tvl[0].protocol', 'slug'],
        ['slug with a space', { tvl: [{ ...good, chain: 'eth main' }] }, '$.tvl[0].chain', 'slug'],
        ['slug starting with a dash', { tvl: [{ ...good, protocol: '-x' }] },
            '$.tvl[0].protocol', 'slug'],
        ['slug of 129 chars', { tvl: [{ ...good, protocol: 'a'.repeat(129) }] },
            '$.tvl[0].protocol', 'slug'],
        ['negative tvl', { tvl: [{ ...good, tvl: -1 }] }, '$.tvl[0].tvl', 'non_negative'],
        ['tvl above 1e15', { tvl: [{ ...good, tvl: 2e15 }] }, '$.tvl[0].tvl', undefined],
        ['tvl as a string', { tvl: [{ ...good, tvl: '100' }] }, '$.tvl[0].tvl', undefined],
        ['tvl missing', { tvl: [{ protocol: 'ing-ok', chain: 'ethereum' }] }, '$.tvl[0].tvl',
            undefined],
        ['protocol missing', { tvl: [{ chain: 'ethereum', tvl: 1 }] }, '$.tvl[0].protocol',
            undefined],
        ['unknown item field', { tvl: [{ ...good, foo: 1 }] }, '$.tvl[0].foo', 'unknown_field'],
        ['unknown top-level field', { tvl: [good], extra: true }, '$.extra', 'unknown_field'],
        ['timestamp an hour ahead', { tvl: [{ ...good, timestamp: nowS() + 3600 }] },
            '$.tvl[0].timestamp', 'future'],
        ['ISO timestamp without a zone', { tvl: [{ ...good, timestamp: '2024-01-01T00:00:00' }] },
            '$.tvl[0].timestamp', undefined],
        ['timestamp not a date', { tvl: [{ ...good, timestamp: 'yesterday' }] },
            '$.tvl[0].timestamp', undefined],
        ['token without prefix', { prices: [{ token: 'usdc', price: 1 }] }, '$.prices[0].token',
            'token'],
        ['zero price', { prices: [{ token: 'coingecko:usdc', price: 0 }] }, '$.prices[0].price',
            'positive'],
        ['negative price', { prices: [{ token: 'coingecko:usdc', price: -2 }] },
            '$.prices[0].price', 'positive'],
        ['confidence above 1', { prices: [{ token: 'coingecko:usdc', price: 1, confidence: 1.5 }] },
            '$.prices[0].confidence', undefined],
        ['tvl not an array', { tvl: { protocol: 'x' } }, '$.tvl', undefined],
        ['empty body object', {}, '$', undefined],
    ];
    for (const [name, body, path, rule] of table) {
        it(`rejects ${name} -> ${path}${rule ? ` (${rule})` : ''}`, async () => {
            const r = await ingest(rtad, body, ingestKey);
            assertValidation(r, path, rule);
        });
    }

    it('all-or-nothing: one bad item rejects the whole batch and stores nothing', async () => {
        const r = await ingest(rtad, {
            tvl: [
                { protocol: 'ing-atomic', chain: 'ethereum', tvl: 10 },
                { protocol: 'ing-atomic', chain: 'polygon', tvl: -5 },
            ],
            prices: [{ token: 'coingecko:atomic', price: 3 }],
        }, ingestKey);
        assertValidation(r, '$.tvl[1].tvl', 'non_negative');
        assertError(await rtad.api('GET', '/v1/protocols/ing-atomic', { key: ingestKey }), 404,
            'protocol_not_found');
        assertError(await rtad.api('GET', '/v1/prices/coingecko:atomic', { key: ingestKey }), 404,
            'token_not_found');
    });

    it('reports every invalid item, not just the first', async () => {
        const r = await ingest(rtad, {
            tvl: [
                { protocol: 'BAD', chain: 'ethereum', tvl: 1 },
                { protocol: 'ok-one', chain: 'ethereum', tvl: 1 },
                { protocol: 'ok-two', chain: 'ethereum', tvl: -1 },
            ],
            prices: [{ token: 'x:y', price: 0 }],
        }, ingestKey);
        assertValidation(r, '$.tvl[0].protocol', 'slug');
        assertValidation(r, '$.tvl[2].tvl', 'non_negative');
        assertValidation(r, '$.prices[0].price', 'positive');
        assert.ok(!r.json.error.details.errors.some((e) => e.path.startsWith('$.tvl[1]')));
    });

    it('malformed JSON -> 400 invalid_json', async () => {
        assertError(await ingest(rtad, '{"tvl": [', ingestKey), 400, 'invalid_json');
        assertError(await ingest(rtad, '{"tvl": []} trailing', ingestKey), 400, 'invalid_json');
        assertError(await ingest(rtad, '', ingestKey), 400, 'invalid_json');
    });

    it('a JSON value that is not an object -> 400', async () => {
        for (const b of ['[]', '42', '"tvl"', 'null']) {
            const r = await ingest(rtad, b, ingestKey);
            assert.equal(r.status, 400, `${b}: ${r.text}`);
            assert.ok(['validation_failed', 'invalid_json'].includes(r.json?.error?.code), r.text);
        }
    });

    it('a user key may not ingest (403, details.required = "ingest")', async () => {
        const u = await makeKey(rtad, { user: 'not-a-feeder', role: 'user' });
        const r = await ingest(rtad, { tvl: [good] }, u.key);
        const e = assertError(r, 403, 'forbidden');
        assert.equal(e.details.required, 'ingest');
    });
});

describe('ingest limits', () => {
    let rtad;
    before(async () => {
        rtad = await startRtad({ env: { RTA_INGEST_MAX_ITEMS: '3', RTA_MAX_BODY_BYTES: '2048' } });
    });
    after(async () => { await rtad?.stop(); });

    const item = (i) => ({ protocol: `lim-${i}`, chain: 'ethereum', tvl: i + 1 });

    it('max_items items pass; one more -> batch_too_large at "$", nothing stored', async () => {
        const ok = await ingest(rtad, { tvl: [item(0), item(1)], prices: [
            { token: 'coingecko:lim', price: 1 }] });
        assert.equal(ok.status, 200, ok.text);
        assert.equal(ok.json.accepted, 3);
        const r = await ingest(rtad, { tvl: [item(10), item(11), item(12)], prices: [
            { token: 'coingecko:lim2', price: 1 }] });
        assertValidation(r, '$', 'batch_too_large');
        assertError(await rtad.api('GET', '/v1/protocols/lim-10', { key: rtad.adminKey }), 404,
            'protocol_not_found');
    });

    it('a body over max_body_bytes -> 413 body_too_large, and the server stays up', async () => {
        const big = { tvl: [{ protocol: 'lim-big', chain: 'ethereum', tvl: 1,
            name: 'x'.repeat(180) }] };
        let text = JSON.stringify(big);
        text += ' '.repeat(4096 - text.length); // valid JSON, 4 KiB
        let r;
        try {
            r = await ingest(rtad, text);
        } catch (e) {
            assert.fail(`no HTTP answer to an oversized body (connection error: ${e.cause?.code
                ?? e.message})`);
        }
        assertError(r, 413, 'body_too_large');
        assert.equal((await rtad.api('GET', '/healthz')).status, 200);
        assertError(await rtad.api('GET', '/v1/protocols/lim-big', { key: rtad.adminKey }), 404,
            'protocol_not_found');
    });

    it('a body just under the limit is read normally', async () => {
        let text = JSON.stringify({ tvl: [item(20)] });
        text += ' '.repeat(2000 - text.length);
        const r = await ingest(rtad, text);
        assert.equal(r.status, 200, r.text);
    });
});
