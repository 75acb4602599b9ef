"""Footer: the screen's key bindings on one line, drawn by one widget, as Textual's Footer draws them.

Textual's Footer is a container of one widget per key (here 23: keys, key groups, group labels),
and Textual's compositor visits every widget a frame's changes reach, cached or not. A
continue's first frame (the status bar and the pause key) and its last (every pane) both reach
the footer's line, and its widgets took 2.5 ms of the first and 4.1 ms of the last on the 2-core
reference machine (``Widget.render_lines`` timed per class, means of eight 64-token continues of
the demo T5), time the continue's steps wait for the interpreter. This footer lays out the same
items, with the same spacing and Textual's footer colours (the ``$footer-*`` theme variables;
``tests/tui/test_footer.py`` compares the two cell by cell), on one cached line, and redraws only
when what it shows changes. It has no compact style (the debugger does not use one).

Every step flips the app's ``busy`` twice, and each flip changes the bindings. The keys an engine
call enables or disables change on the footer only once it has lasted :data:`KEYS_AFTER_S`, or at
a continue's first paced frame (:meth:`DebuggerFooter.show_waiting`), so a step or a short
continue changes nothing there: what a call disables is refused at once and what it enables
(pause) works at once, whatever the footer shows (``check_action``), and the status bar says
``running`` at once. The key's frame then repaints the status bar alone: with the pause key
shown at once it also reached the footer's line at the screen's other edge, and Textual
composited every widget between the two (3.8-4.1 against 2.6-2.8 ms of the UI thread for the
key's frame of a 64-token continue of the demo T5, ``bench_fast_steps.py --ui-cpu``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import groupby

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget

KEYS_AFTER_S = 0.3
"""While an engine call runs, the keys it enables or disables change only after this long, or at a
continue's first paced frame if that comes first (a frame of its own mid-continue would cost the
model as much as the change): a step or a short continue has ended by then."""

SCROLL_CELLS = 4
"""How far one turn of the mouse wheel moves keys that do not fit the terminal's width."""


@dataclass(frozen=True)
class FooterItem:
    """One thing on the footer's line: a key (with its description, or a group's key without
    one), or a key group's label.

    Attributes:
        key: the key a click presses (None: a group's label).
        action: the binding's action (None: a label).
        display: the key as shown (``app.get_key_display``), or the label's text.
        description: shown after the key ("" for a grouped key and for a label).
        enabled: whether the action can run, as the screen's bindings say now.
        tooltip: what hovering the item shows.
        grouped: a key of a group: its key alone, no padding.
        margin: cells before and after the item (a group's; collapsed between neighbours as
            Textual's horizontal layout does: the larger of the two).
        padding_left: blank cells at the item's start (a compact group's first key).
    """

    key: str | None
    action: str | None
    display: str
    description: str = ""
    enabled: bool = True
    tooltip: str = ""
    grouped: bool = False
    margin: tuple[int, int] = (0, 0)
    padding_left: int = 0


def footer_items(screen: Screen) -> tuple[list[FooterItem], FooterItem | None]:
    """The shown bindings of ``screen`` as Textual's Footer lays them out (``Footer.compose``):
    one key per action, in binding order; consecutive actions of one ``Binding.Group`` as their
    keys alone, then the group's label. Returns the items and the command palette's key (drawn
    at the right edge), if the app shows one."""
    app = screen.app
    active = screen.active_bindings  # a property that walks the focus chain's bindings each read
    by_action: dict[str, list] = {}
    for _node, binding, enabled, tooltip in active.values():
        if binding.show:
            by_action.setdefault(binding.action, []).append((binding, enabled, tooltip))
    items: list[FooterItem] = []
    for group, runs in groupby(by_action.values(), lambda bindings: bindings[0][0].group):
        runs = list(runs)
        if group is not None and len(runs) > 1:
            for index, bindings in enumerate(runs):
                binding, enabled, tooltip = bindings[0]
                # Textual: a compact group pads its start by one cell and has a margin of one
                # after it; a group that is not compact gives each key a margin of one either
                # side (collapsed between its keys), the first key's inside the group.
                first, last = index == 0, index == len(runs) - 1
                margin = (0, int(last)) if group.compact else (0 if first else 1, 1)
                items.append(FooterItem(binding.key, binding.action, app.get_key_display(binding), "", enabled,
                                        tooltip or binding.description, grouped=True, margin=margin,
                                        padding_left=int(first)))
            items.append(FooterItem(None, None, group.description, margin=(0, 1)))
        else:
            for bindings in runs:
                binding, enabled, tooltip = bindings[0]
                items.append(FooterItem(binding.key, binding.action, app.get_key_display(binding),
                                        binding.description, enabled, tooltip))
    palette = None
    if app.ENABLE_COMMAND_PALETTE and app.COMMAND_PALETTE_BINDING in active:
        _node, binding, enabled, _tooltip = active[app.COMMAND_PALETTE_BINDING]
        palette = FooterItem(binding.key, binding.action, app.get_key_display(binding), binding.description,
                             enabled, binding.tooltip or binding.description)
    return items, palette


class DebuggerFooter(Widget, can_focus=False):
    """The screen's shown key bindings on one line; click a key to press it.

    Keys whose action cannot run now are greyed as Textual greys a disabled key (dim); the key
    under the pointer is highlighted. Keys that do not fit scroll with the mouse wheel; the command palette's key
    stays at the right edge.
    """

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {
        "footer-key--key",
        "footer-key--description",
        "footer-key--label",
        "footer-key--hover",
        "footer-key--palette-edge",
    }
    DEFAULT_CSS = """
    DebuggerFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        .footer-key--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .footer-key--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        .footer-key--label {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        .footer-key--hover {
            color: $footer-key-foreground;
            background: $block-hover-background;
        }
        .footer-key--palette-edge {
            color: $foreground 20%;
        }
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self._items: list[FooterItem] = []
        self._palette: FooterItem | None = None
        """The items as drawn (a key waiting to change is drawn as it was), and the palette's key."""
        self._spans: list[tuple[int, int, FooterItem]] = []
        """Cells ``[start, end)`` of each drawn item (the palette's at the right edge)."""
        self._line: Strip | None = None
        self._hovered: str | None = None
        """The action of the key under the pointer."""
        self._scroll = 0
        self._wait_timer = None

    def on_mount(self) -> None:
        """Follow the screen's bindings; draw them as they are now (they are in the first frame)."""
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)
        self._update(self.screen, now=True)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def shown_enabled(self, action: str) -> bool | None:
        """Whether ``action``'s key is drawn enabled (None: not shown)."""
        return self._drawn_enabled().get(action)

    def _drawn_enabled(self) -> dict[str, bool]:
        return _enabled_by_action(self._items, self._palette)

    def bindings_changed(self, screen: Screen) -> None:
        """Keys change at once, except while an engine call runs (the app's ``busy``): then they
        wait :data:`KEYS_AFTER_S`."""
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen:
            return
        self._update(screen, now=False)

    def show_waiting(self) -> None:
        """Show the waiting keys as they are now: a frame is being made anyway (a continue's paced
        frame), and the timer's own would be one more."""
        if self._wait_timer is not None:
            self._update(self.screen, now=True)

    def _update(self, screen: Screen, now: bool) -> None:
        """Show the bindings as they are (``now``, or no engine call running), or keep each key
        as drawn until the call has lasted :data:`KEYS_AFTER_S`; redraw only if what is shown changed."""
        now = now or not getattr(screen.app, "busy", False)
        if self._wait_timer is not None:
            self._wait_timer.stop()
            self._wait_timer = None
        items, palette = footer_items(screen)
        items = _keep_order(items, self._items)
        waiting = False
        shown, drawn_enabled = {}, self._drawn_enabled()
        for item in (*items, palette):
            if item is None or item.action is None:
                continue
            was_enabled = drawn_enabled.get(item.action)
            if not now and was_enabled is not None and item.enabled != was_enabled:
                waiting = True  # drawn as it was until the call has lasted KEYS_AFTER_S
                shown[item.action] = was_enabled
            else:
                shown[item.action] = item.enabled
        drawn = [_as_shown(item, shown) for item in items], palette and _as_shown(palette, shown)
        if drawn != (self._items, self._palette):
            self._items, self._palette = drawn
            self._line = None
            self.refresh()
        if waiting:
            self._wait_timer = self.set_timer(KEYS_AFTER_S, lambda: self._update(screen, now=True))

    # -- drawing -------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """The footer's one line, cached until the shown keys, the width, hover or scroll change."""
        if y != 0:
            return Strip.blank(self.size.width, self.rich_style)
        if self._line is None or self._line.cell_length != self.size.width:
            self._line = self._draw(self.size.width)
        return self._line

    def _draw(self, width: int) -> Strip:
        base = self.rich_style
        blank = Style.from_color(bgcolor=base.bgcolor)  # Textual's margins and padding: no foreground
        palette = self._palette_segments(base, blank) if self._palette is not None else []
        palette_width = sum(len(segment.text) for segment in palette)
        keys, spans = self._key_segments(base, blank)
        view = max(0, width - palette_width)
        self._scroll = max(0, min(self._scroll, sum(len(s.text) for s in keys) - view))
        line = Strip(keys).crop_extend(self._scroll, self._scroll + view, blank)
        self._spans = [(start - self._scroll, end - self._scroll, item) for start, end, item in spans
                       if end > self._scroll and start < self._scroll + view]
        if palette:
            self._spans.append((view, width, self._palette))
            line = Strip([*line, *palette])
        return line.crop_extend(0, width, blank)

    def _key_segments(self, base: Style, blank: Style) -> tuple[list[Segment], list[tuple[int, int, FooterItem]]]:
        segments: list[Segment] = []
        spans = []
        x, margin = 0, 0
        for item in self._items:
            gap = max(margin, item.margin[0]) + item.padding_left
            if gap:
                segments.append(Segment(" " * gap, blank))
                x += gap
            parts = self._item_parts(item, base)
            width = sum(len(text) for text, _ in parts)
            spans.append((x, x + width, item))
            segments += [Segment(text, style) for text, style in parts]
            x += width
            margin = item.margin[1]
        if margin:
            segments.append(Segment(" " * margin, blank))
        return segments, spans

    def _item_parts(self, item: FooterItem, base: Style) -> list[tuple[str, Style]]:
        """The item's text runs and styles: Textual's FooterKey pads its key by one cell either
        side and its description by one after; a grouped key is its key alone."""
        if item.key is None:
            return [(item.display, base + self.get_component_rich_style("footer-key--label"))]
        key, description = self._key_styles(item, base)
        if item.grouped or not item.description:
            return [(item.display, key)]
        return [(f" {item.display} ", key), (f"{item.description} ", description)]

    def _palette_segments(self, base: Style, blank: Style) -> list[Segment]:
        """The command palette's key as Textual draws it at the footer's right edge: a thin
        edge, the key and its description without padding (a compact key), one cell after."""
        item = self._palette
        edge = base + self.get_component_rich_style("footer-key--palette-edge")
        key, description = self._key_styles(item, base)
        return [Segment("▏", edge), Segment(item.display, key), Segment(f" {item.description}", description),
                Segment(" ", blank)]

    def _key_styles(self, item: FooterItem, base: Style) -> tuple[Style, Style]:
        """A key's styles for its key and its description: hovered, greyed (dim) or not."""
        if item.action is not None and item.action == self._hovered:
            base += self.get_component_rich_style("footer-key--hover")
        if not item.enabled:
            base += Style(dim=True)
        return (base + self.get_component_rich_style("footer-key--key", partial=True),
                base + self.get_component_rich_style("footer-key--description", partial=True))

    # -- the mouse -------------------------------------------------------------------------------

    def _item_at(self, x: int) -> FooterItem | None:
        for start, end, item in self._spans:
            if start <= x < end:
                return item
        return None

    def on_mouse_down(self, event: events.MouseDown) -> None:
        """A click presses the key under it if its action can run now, whether or not the footer
        shows that yet (a key waits :data:`KEYS_AFTER_S` to change); else it rings the bell, as a
        greyed key of Textual's does."""
        item = self._item_at(event.x)
        if item is None or item.key is None:
            return
        if _enabled_by_action(*footer_items(self.screen)).get(item.action, item.enabled):
            self.app.simulate_key(item.key)
        else:
            self.app.bell()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        item = self._item_at(event.x)
        self._hover(item if item is not None and item.key is not None else None)

    def on_leave(self, _event: events.Leave) -> None:
        self._hover(None)

    def _hover(self, item: FooterItem | None) -> None:
        action = None if item is None else item.action
        if action != self._hovered:
            self._hovered = action
            self.tooltip = (item.tooltip or None) if item is not None else None
            self._line = None
            self.refresh()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._scroll_by(SCROLL_CELLS, event)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._scroll_by(-SCROLL_CELLS, event)

    def _scroll_by(self, cells: int, event: events.MouseEvent) -> None:
        event.stop()
        self._scroll = max(0, self._scroll + cells)
        self._line = None
        self.refresh()


def _keep_order(items: list[FooterItem], drawn: list[FooterItem]) -> list[FooterItem]:
    """``items`` in the order already drawn, when they are the same actions and labels: which
    pane has focus reorders the screen's bindings (a focused pane's own come first), and keys
    that move about as focus moves are hard to find."""
    def identity(item: FooterItem):
        return item.action or ("label", item.display)

    if not drawn or sorted(map(identity, items), key=str) != sorted(map(identity, drawn), key=str):
        return items
    enabled = {identity(item): item.enabled for item in items}
    return [replace(item, enabled=enabled[identity(item)]) for item in drawn]


def _enabled_by_action(items: list[FooterItem], palette: FooterItem | None) -> dict[str, bool]:
    """Whether each action's key is enabled, among ``items`` and the palette's key."""
    return {item.action: item.enabled for item in (*items, palette) if item is not None and item.action is not None}


def _as_shown(item: FooterItem, shown: dict[str, bool]) -> FooterItem:
    """``item`` as drawn: a key waiting to change keeps its look."""
    enabled = shown.get(item.action, item.enabled)
    return item if enabled == item.enabled else replace(item, enabled=enabled)
