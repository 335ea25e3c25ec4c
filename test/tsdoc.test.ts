/**
 * The public API is documented: every member of every interface or object type that src/index.ts
 * exports (options, deps, results) has a TSDoc comment, as issue 6 asks ("TSDoc on every option").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

test('every member of every exported interface and object type has TSDoc', () => {
  const index = fileURLToPath(new URL('../../src/index.ts', import.meta.url));
  const program = ts.createProgram([index], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, noEmit: true });
  const checker = program.getTypeChecker();
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(index)!);
  assert.ok(moduleSymbol !== undefined, 'src/index.ts has exports');
  const undocumented: string[] = [];
  let members = 0;
  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    for (const d of symbol.declarations ?? []) {
      let list: ts.NodeArray<ts.TypeElement> | undefined;
      if (ts.isInterfaceDeclaration(d)) list = d.members;
      else if (ts.isTypeAliasDeclaration(d) && ts.isTypeLiteralNode(d.type)) list = d.type.members;
      for (const m of list ?? []) {
        if (m.name === undefined) continue;
        members++;
        if (ts.getJSDocCommentsAndTags(m).length === 0) undocumented.push(`${exported.name}.${m.name.getText()}`);
      }
    }
  }
  assert.ok(members > 200, `only ${members} members found: is the export walk broken?`);
  assert.deepEqual(undocumented, []);
});
