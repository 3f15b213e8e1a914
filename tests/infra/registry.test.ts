import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { describe, expect, it } from 'vitest';
import { SchemaRegistryClient } from '../../libs/registry/index.ts';
import { registryUrl, testRegistry, uniqueName } from '../helpers/real-stack.ts';

const v1 = {
  type: 'record',
  name: 'Order',
  namespace: 'dev.conveyor.test',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'amount', type: 'long' },
  ],
};

describe('the schema registry (Confluent REST API)', () => {
  it('registers Avro schemas, accepts a compatible change and refuses an incompatible one under BACKWARD', async () => {
    const registry = testRegistry();
    const subject = `${uniqueName('orders')}-value`;
    const first = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v1) }, { subject });
    await new SchemaRegistryClient(registryUrl()).setCompatibility(subject, 'BACKWARD');

    const withOptional = { ...v1, fields: [...v1.fields, { name: 'note', type: ['null', 'string'], default: null }] };
    const second = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(withOptional) },
      { subject },
    );
    expect(second.id).not.toBe(first.id);

    const requiredAdded = { ...v1, fields: [...v1.fields, { name: 'currency', type: 'string' }] };
    await expect(
      registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(requiredAdded) }, { subject }),
    ).rejects.toMatchObject({ status: 409 });

    expect(await registry.getSchema(first.id)).toBeTruthy();
    const encoded = await registry.encode(second.id, { id: 'o1', amount: 5, note: null });
    expect(await registry.decode(encoded)).toEqual({ id: 'o1', amount: 5, note: null });
  });
});
