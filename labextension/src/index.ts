/**
 * JupyterLab plugin: `%%rust_async` cells are highlighted as Rust.
 *
 * A notebook's code cells use the kernel's language, IPython (mime type
 * `text/x-ipython`), whose CodeMirror 6 language is JupyterLab's Lezer Python
 * parser. This plugin gives that language a mixed parser (Lezer's
 * `parseMixed`): when a cell starts with the `%%rust_async` magic, everything
 * after the magic's line is parsed by JupyterLab's own Rust parser and mounted
 * over the Python tree as an overlay. Highlighting, indentation and comment
 * toggling (`//`) then follow Rust in the cell's body, the magic line stays
 * IPython, and every other cell is untouched. The switch is part of the
 * parse, so typing or deleting the magic line takes effect at once.
 */

import { Language, LanguageSupport, LRLanguage } from '@codemirror/language';
import { EditorView } from '@codemirror/view';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { Input, parseMixed, Parser, SyntaxNodeRef } from '@lezer/common';
import type { IPlugin } from '@lumino/coreutils';

/** The cell magic, on the cell's first non-blank line (as IPython finds it). */
const MAGIC = /^(?:[ \t]*\r?\n)*%%rust_async(?=[ \t\r\n]|$)[^\n]*(?:\n|$)/;

/** How much of a cell is read to find the magic line (flags included). */
const HEAD = 4096;

/** Where a `%%rust_async` cell's Rust starts, or -1 for any other cell. */
function rustBodyStart(head: string): number {
  const match = MAGIC.exec(head);
  return match ? match[0].length : -1;
}

/** IPython whose `%%rust_async` cells are parsed as Rust after the magic line. */
function withRustCells(ipython: LRLanguage, rust: Parser): LRLanguage {
  const nest = (node: SyntaxNodeRef, input: Input) => {
    if (!node.type.isTop) {
      return null;
    }
    const start = rustBodyStart(input.read(0, Math.min(input.length, HEAD)));
    if (start < 0 || start >= input.length) {
      return null;
    }
    return { parser: rust, overlay: [{ from: start, to: input.length }] };
  };
  return ipython.configure({ wrap: parseMixed(nest) }, ipython.name);
}

/** `data-ipy-rustasync="rust"` on a `%%rust_async` cell's editor (for CSS and tests). */
const marker = EditorView.editorAttributes.compute(
  ['doc'],
  (state): Record<string, string> =>
    rustBodyStart(state.doc.sliceString(0, HEAD)) >= 0
      ? { 'data-ipy-rustasync': 'rust' }
      : {}
);

const plugin: IPlugin<unknown, void> = {
  id: 'ipy-rustasync:rust-cells',
  description: 'Highlights %%rust_async cells as Rust.',
  autoStart: true,
  requires: [IEditorLanguageRegistry],
  activate: async (_app: unknown, languages: IEditorLanguageRegistry) => {
    // Both loads are JupyterLab's own language chunks; the registry keeps them.
    const [ipython, rust] = await Promise.all([
      languages.getLanguage('ipython'),
      languages.getLanguage('rust')
    ]);
    const base = ipython?.support;
    const rustSupport = rust?.support;
    if (!ipython || !base || !rustSupport) {
      console.warn('ipy-rustasync: no IPython or Rust language to combine');
      return;
    }
    if (!(base.language instanceof LRLanguage)) {
      console.warn('ipy-rustasync: the IPython language is not a Lezer language');
      return;
    }
    const language: Language = withRustCells(
      base.language,
      rustSupport.language.parser
    );
    // Editors created from now on get the combined language for text/x-ipython.
    ipython.support = new LanguageSupport(language, [
      base.support,
      rustSupport.support,
      marker
    ]);
  }
};

export default plugin;
