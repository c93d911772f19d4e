// POST /v1/query/advanced: filters, sort, paging, aggregations, validation, ETag / 304.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRtad, makeKey, ingest } from './lib/rtad.mjs';
import { approx, assertError, assertValidation, ISO_RE } from './lib/check.mjs';
import { rows, seedMarket } from './lib/seed.mjs';

describe('advanced query', () => {
    let rtad;
    let key;
    before(async () => {
        rtad = await startRtad();
        key = (await makeKey(rtad, { user: 'analyst', role: 'user', tier: 'enterprise' })).key;
        await seedMarket(rtad);
    });
    after(async () => { await rtad?.stop(); });

    async function query(body, headers) {
        const r = await rtad.api('POST', '/v1/query/advanced', { key, body, headers });
        assert.equal(r.status, 200, r.text);
        const j = r.json;
        assert.ok(Array.isArray(j.data), r.text);
        assert.ok(Array.isArray(j.aggregations), r.text);
        assert.ok(j.meta && Number.isInteger(j.meta.total) && Number.isInteger(j.meta.returned),
            r.text);
        assert.equal(j.meta.returned, j.data.length);
        assert.equal(typeof j.meta.cached, 'boolean');
        assert.ok(j.meta.dataVersion !== undefined && j.meta.dataVersion !== null);
        assert.equal(typeof j.meta.tookMs, 'number');
        return { r, j };
    }
    const pairs = (data) => data.map((x) => `${x.protocol}/${x.chain}`);

    it('the spec example returns the matching rows, sorted, with a sum by chain', async () => {
        const { j } = await query({
            filters: {
                protocols: ['q-uni', 'q-aave'],
                chains: ['ethereum', 'polygon'],
                tvl_range: { min: 1000000, max: 10000000000 },
            },
            aggregations: [{ field: 'tvl', operation: 'sum', group_by: 'chain' }],
            sort: { field: 'tvl', order: 'desc' },
            limit: 100,
        });
        assert.deepEqual(pairs(j.data),
            ['q-aave/ethereum', 'q-uni/ethereum', 'q-aave/polygon', 'q-uni/polygon']);
        assert.equal(j.meta.total, 4);
        const row = j.data[0];
        for (const f of ['protocol', 'name', 'chain', 'category', 'tvl', 'change_1h', 'change_24h',
            'change_7d', 'updatedAt']) {
            assert.ok(f in row, `row lacks ${f}: ${JSON.stringify(row)}`);
        }
        assert.equal(row.name, 'Aave Q');
        assert.equal(row.category, 'Lending');
        assert.equal(row.tvl, 8e9);
        assert.match(row.updatedAt, ISO_RE);
        assert.equal(j.aggregations.length, 1);
        const agg = j.aggregations[0];
        assert.equal(agg.field, 'tvl');
        assert.equal(agg.operation, 'sum');
        assert.equal(agg.group_by, 'chain');
        assert.deepEqual(agg.groups, [
            { key: 'ethereum', value: 13e9, count: 2 },
            { key: 'polygon', value: 7e8, count: 2 },
        ]);
    });

    it('the spec example with its change_24h filter keeps only rows with a known change',
        async () => {
            const { j } = await query({
                filters: { protocols: ['q-uni', 'q-aave'], chains: ['ethereum', 'polygon'],
                    tvl_range: { min: 1000000, max: 10000000000 },
                    change_24h: { min: -0.1, max: 0.1 } },
            });
            // q-uni/ethereum moved +25 %, q-aave/ethereum -20 %; the rest have no 24 h history
            assert.deepEqual(j.data, []);
            assert.equal(j.meta.total, 0);
        });

    it('change_24h is a fraction computed from the value 24 h ago', async () => {
        const { j } = await query({ filters: { change_24h: { min: 0.2, max: 0.3 } } });
        assert.deepEqual(pairs(j.data), ['q-uni/ethereum']);
        approx(j.data[0].change_24h, 0.25, 1e-6);
        const { j: down } = await query({ filters: { change_24h: { min: -0.25, max: -0.15 } } });
        assert.deepEqual(pairs(down.data), ['q-aave/ethereum']);
        approx(down.data[0].change_24h, -0.2, 1e-6);
        const { j: all } = await query({ filters: { protocols: ['q-curve'] } });
        for (const x of all.data) assert.equal(x.change_24h, null, 'unknown change must be null');
    });

    it('no filters: every protocol x chain pair', async () => {
        const { j } = await query({});
        assert.equal(j.meta.total, rows().length);
        assert.deepEqual(new Set(pairs(j.data)),
            new Set(rows().map((x) => `${x.protocol}/${x.chain}`)));
    });

    it('tvl_range bounds the per-pair TVL', async () => {
        const { j } = await query({ filters: { tvl_range: { min: 9e8, max: 6e9 } },
            sort: { field: 'tvl', order: 'asc' } });
        assert.deepEqual(pairs(j.data), ['q-uni/arbitrum', 'q-curve/ethereum', 'q-uni/ethereum']);
    });

    it('categories filter', async () => {
        const { j } = await query({ filters: { categories: ['Dexes'] },
            sort: { field: 'tvl', order: 'desc' } });
        assert.deepEqual(pairs(j.data), ['q-uni/ethereum', 'q-curve/ethereum', 'q-uni/arbitrum',
            'q-curve/arbitrum', 'q-uni/polygon']);
    });

    it('limit and offset page through the sorted rows; total counts all matches', async () => {
        const { j: full } = await query({ sort: { field: 'tvl', order: 'desc' } });
        const { j: p1 } = await query({ sort: { field: 'tvl', order: 'desc' }, limit: 3 });
        const { j: p2 } = await query({ sort: { field: 'tvl', order: 'desc' }, limit: 3,
            offset: 3 });
        const { j: p3 } = await query({ sort: { field: 'tvl', order: 'desc' }, limit: 3,
            offset: 6 });
        assert.equal(p1.meta.total, 8);
        assert.equal(p1.meta.returned, 3);
        assert.deepEqual([...pairs(p1.data), ...pairs(p2.data), ...pairs(p3.data)],
            pairs(full.data));
        assert.equal(p3.data.length, 2);
        const tvls = full.data.map((x) => x.tvl);
        assert.deepEqual(tvls, [...tvls].sort((a, b) => b - a));
    });

    it('an offset past the end gives no rows but the full total', async () => {
        const { j } = await query({ offset: 100 });
        assert.deepEqual(j.data, []);
        assert.equal(j.meta.total, 8);
        assert.equal(j.meta.returned, 0);
    });

    it('sorts by protocol name ascending', async () => {
        const { j } = await query({ sort: { field: 'protocol', order: 'asc' } });
        const ps = j.data.map((x) => x.protocol);
        assert.deepEqual(ps, [...ps].sort());
    });

    it('aggregations cover all matching rows, not only the page', async () => {
        const { j } = await query({
            limit: 1,
            aggregations: [
                { field: 'tvl', operation: 'count', group_by: 'protocol' },
                { field: 'tvl', operation: 'avg', group_by: 'none' },
                { field: 'tvl', operation: 'max', group_by: 'category' },
                { field: 'tvl', operation: 'min', group_by: 'chain' },
            ],
        });
        assert.equal(j.data.length, 1);
        const [count, avg, max, min] = j.aggregations;
        assert.equal(count.operation, 'count');
        assert.deepEqual(Object.fromEntries(count.groups.map((g) => [g.key, [g.value, g.count]])),
            { 'q-uni': [3, 3], 'q-aave': [2, 2], 'q-curve': [2, 2], 'q-tiny': [1, 1] },
            JSON.stringify(count));
        assert.equal(count.groups[0].key, 'q-uni');
        assert.equal(count.groups[3].key, 'q-tiny');
        const total = rows().reduce((s, x) => s + x.tvl, 0);
        assert.equal(avg.groups.length, 1);
        assert.equal(avg.groups[0].key, null);
        assert.equal(avg.groups[0].count, 8);
        approx(avg.groups[0].value, total / 8, 1e-9);
        assert.deepEqual(max.groups, [
            { key: 'Lending', value: 8e9, count: 2 },
            { key: 'Dexes', value: 5e9, count: 5 },
            { key: 'Yield', value: 5e5, count: 1 },
        ]);
        const minBy = Object.fromEntries(min.groups.map((g) => [g.key, g.value]));
        assert.deepEqual(minBy, { ethereum: 2e9, arbitrum: 3e8, polygon: 2e8, base: 5e5 });
        const vals = min.groups.map((g) => g.value);
        assert.deepEqual(vals, [...vals].sort((a, b) => b - a), 'groups sorted by value desc');
    });

    const bad = [
        ['min > max', { filters: { tvl_range: { min: 10, max: 1 } } }, '$.filters.tvl_range'],
        ['limit 0', { limit: 0 }, '$.limit'],
        ['limit 5000', { limit: 5000 }, '$.limit'],
        ['limit as a string', { limit: '10' }, '$.limit'],
        ['negative offset', { offset: -1 }, '$.offset'],
        ['unknown sort field', { sort: { field: 'bogus', order: 'asc' } }, '$.sort.field'],
        ['unknown sort order', { sort: { field: 'tvl', order: 'up' } }, '$.sort.order'],
        ['unknown filter', { filters: { bogus: 1 } }, '$.filters.bogus', 'unknown_field'],
        ['unknown top-level field', { filter: {} }, '$.filter', 'unknown_field'],
        ['protocols not an array', { filters: { protocols: 'q-uni' } }, '$.filters.protocols'],
        ['tvl_range.min not a number', { filters: { tvl_range: { min: 'x' } } },
            '$.filters.tvl_range.min'],
        ['unknown aggregation operation',
            { aggregations: [{ field: 'tvl', operation: 'median', group_by: 'chain' }] },
            '$.aggregations[0].operation'],
        ['unknown group_by', { aggregations: [{ field: 'tvl', operation: 'sum',
            group_by: 'planet' }] }, '$.aggregations[0].group_by'],
        ['change_24h min > max', { filters: { change_24h: { min: 0.5, max: -0.5 } } },
            '$.filters.change_24h'],
    ];
    for (const [name, body, path, rule] of bad) {
        it(`rejects ${name} -> 400 at ${path}`, async () => {
            const r = await rtad.api('POST', '/v1/query/advanced', { key, body });
            assertValidation(r, path, rule);
        });
    }

    it('malformed JSON -> 400 invalid_json', async () => {
        assertError(await rtad.api('POST', '/v1/query/advanced', { key, body: '{"limit":' }),
            400, 'invalid_json');
    });

    it('ETag: same query with If-None-Match -> 304; new data changes the ETag', async () => {
        const body = { filters: { protocols: ['q-uni'] }, sort: { field: 'tvl', order: 'desc' } };
        const { r: first, j } = await query(body);
        const etag = first.headers.get('etag');
        assert.ok(etag, 'no ETag header');
        const v1 = j.meta.dataVersion;

        const again = await rtad.api('POST', '/v1/query/advanced', { key, body });
        assert.equal(again.status, 200);
        assert.equal(again.headers.get('etag'), etag, 'same query, same data: same ETag');
        assert.equal(again.json.meta.cached, true, 'second identical query should be cached');

        const nm = await rtad.api('POST', '/v1/query/advanced',
            { key, body, headers: { 'if-none-match': etag } });
        assert.equal(nm.status, 304, nm.text);
        assert.equal(nm.text, '');
        assert.equal(nm.headers.get('etag'), etag);

        const other = await rtad.api('POST', '/v1/query/advanced',
            { key, body, headers: { 'if-none-match': '"not-the-etag"' } });
        assert.equal(other.status, 200);

        const ing = await ingest(rtad, { tvl: [{ protocol: 'q-uni', chain: 'ethereum',
            tvl: 5.5e9 }] });
        assert.equal(ing.status, 200, ing.text);
        assert.equal(ing.json.changed, 1);

        const after = await rtad.api('POST', '/v1/query/advanced',
            { key, body, headers: { 'if-none-match': etag } });
        assert.equal(after.status, 200, 'stale ETag must not give 304 after new data');
        assert.notEqual(after.headers.get('etag'), etag);
        assert.equal(after.json.meta.cached, false);
        assert.notEqual(after.json.meta.dataVersion, v1);
        assert.equal(after.json.data[0].tvl, 5.5e9);
    });

    it('needs the query permission', async () => {
        const reader = await makeKey(rtad, { user: 'ro', role: 'reader' });
        const r = await rtad.api('POST', '/v1/query/advanced', { key: reader.key, body: {} });
        const e = assertError(r, 403, 'forbidden');
        assert.equal(e.details.required, 'query');
    });
});
