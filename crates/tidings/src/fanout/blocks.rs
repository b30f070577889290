//! A first-in first-out queue kept in blocks of a fixed size: a socket's outbound queue.
//!
//! A push never moves what is queued: when the last block is full the next one is taken from the
//! empty blocks the queue keeps behind its items, or allocated (one small block, never a copy of
//! the queue). A block emptied by popping moves behind the items, to be filled again. So a queue
//! that once held a burst takes the next one without allocating, and a queue handed from the
//! socket's writer to the fan-out (`Outbox::next_batch` swaps them) is never grown by the thread
//! that did not allocate it: growing a buffer another thread allocated took glibc's lock of that
//! thread's arena, and the two threads then waited on each other (`docs/benchmarks.md`).

use std::collections::VecDeque;

/// Items in one block: 16 of a socket's items (40 bytes each) take 640 bytes, a size glibc
/// serves from its per-thread cache.
pub(crate) const BLOCK: usize = 16;

/// Blocks the list of a queue's blocks has room for once a queue needs a second block: it then
/// takes a burst of 128 items before the list grows again. Until then the list has room for one:
/// most sockets' queues never hold more than a block.
const FIRST_BLOCKS: usize = 8;

/// A queue in blocks of [`BLOCK`] items.
#[derive(Debug)]
pub(crate) struct Blocks<T> {
    /// The first `used` blocks hold the items, in order, none of them empty; the rest are empty,
    /// kept for later pushes.
    blocks: VecDeque<VecDeque<T>>,
    used: usize,
    len: usize,
}

impl<T> Default for Blocks<T> {
    fn default() -> Self {
        Self {
            blocks: VecDeque::new(),
            used: 0,
            len: 0,
        }
    }
}

impl<T> Blocks<T> {
    /// How many items are queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many items the blocks held, queued and kept, have room for.
    pub(crate) fn room(&self) -> usize {
        self.blocks.iter().map(VecDeque::capacity).sum()
    }

    /// Queues `item` last.
    pub(crate) fn push_back(&mut self, item: T) {
        let last_full = self
            .used
            .checked_sub(1)
            .is_none_or(|last| self.blocks[last].len() >= BLOCK);
        if last_full {
            if self.used == self.blocks.len() {
                self.make_room();
                self.blocks.push_back(VecDeque::with_capacity(BLOCK));
            }
            self.used += 1;
        }
        self.blocks[self.used - 1].push_back(item);
        self.len += 1;
    }

    /// Queues `item` first.
    pub(crate) fn push_front(&mut self, item: T) {
        let first_full = self.used == 0 || self.blocks[0].len() >= BLOCK;
        if first_full {
            let block = if self.used < self.blocks.len() {
                self.blocks.pop_back().unwrap_or_default()
            } else {
                self.make_room();
                VecDeque::with_capacity(BLOCK)
            };
            self.blocks.push_front(block);
            self.used += 1;
        }
        self.blocks[0].push_front(item);
        self.len += 1;
    }

    /// The first item.
    pub(crate) fn front(&self) -> Option<&T> {
        self.blocks.front().and_then(VecDeque::front)
    }

    /// Takes the first item out.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let item = self.blocks.front_mut()?.pop_front()?;
        self.len -= 1;
        if self.blocks[0].is_empty() {
            self.spare(0);
        }
        Some(item)
    }

    /// The items, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks.iter().take(self.used).flatten()
    }

    /// Replaces the item at `at` with `item`, returning the one it replaced.
    pub(crate) fn replace(&mut self, at: usize, item: T) -> Option<T> {
        let (block, at) = self.find(at)?;
        Some(std::mem::replace(&mut self.blocks[block][at], item))
    }

    /// Takes the item at `at` out.
    pub(crate) fn remove(&mut self, at: usize) -> Option<T> {
        let (block, at) = self.find(at)?;
        let item = self.blocks[block].remove(at)?;
        self.len -= 1;
        if self.blocks[block].is_empty() {
            self.spare(block);
        }
        Some(item)
    }

    /// Keeps only the items `keep` says to.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut block = 0;
        while block < self.used {
            let before = self.blocks[block].len();
            self.blocks[block].retain(&mut keep);
            self.len -= before - self.blocks[block].len();
            if self.blocks[block].is_empty() {
                self.spare(block);
            } else {
                block += 1;
            }
        }
    }

    /// Takes every item out, in order.
    #[cfg(test)]
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.pop_front())
    }

    /// The block holding the item at `at`, and the item's place in it.
    fn find(&self, mut at: usize) -> Option<(usize, usize)> {
        for (block, items) in self.blocks.iter().take(self.used).enumerate() {
            if at < items.len() {
                return Some((block, at));
            }
            at -= items.len();
        }
        None
    }

    /// Makes room in the list for one more block when it is full: a new list, twice as long (one
    /// block long at first, then [`FIRST_BLOCKS`]), takes the blocks, and the old one is freed.
    /// Never `realloc`: the list may have been allocated by the other thread (see the module).
    fn make_room(&mut self) {
        let room = self.blocks.capacity();
        if self.blocks.len() < room {
            return;
        }
        let room = match room {
            0 => 1,
            room => (2 * room).max(FIRST_BLOCKS),
        };
        let mut list = VecDeque::with_capacity(room);
        list.append(&mut self.blocks);
        self.blocks = list;
    }

    /// Moves the used block at `block`, now empty, behind the items, to be filled again.
    fn spare(&mut self, block: usize) {
        if let Some(empty) = self.blocks.remove(block) {
            self.blocks.push_back(empty);
        }
        self.used -= 1;
    }
}

impl<T> Extend<T> for Blocks<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        items.into_iter().for_each(|item| self.push_back(item));
    }
}

impl<T> FromIterator<T> for Blocks<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut blocks = Self::default();
        blocks.extend(items);
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(blocks: &Blocks<usize>) -> Vec<usize> {
        blocks.iter().copied().collect()
    }

    /// A socket's queue that never holds more than a block (most do not) holds no room for more
    /// in its list.
    #[test]
    fn one_block_takes_a_list_of_one() {
        let mut blocks: Blocks<usize> = (0..BLOCK).collect();
        assert_eq!(blocks.blocks.capacity(), 1);
        blocks.push_back(BLOCK);
        assert_eq!(
            blocks.blocks.capacity(),
            FIRST_BLOCKS,
            "grown at the second block"
        );
        let mut blocks: Blocks<usize> = (0..BLOCK).collect();
        blocks.push_front(0);
        assert_eq!(blocks.blocks.capacity(), FIRST_BLOCKS, "in front too");
        let blocks: Blocks<usize> = (0..(FIRST_BLOCKS * BLOCK + 1)).collect();
        assert_eq!(blocks.blocks.capacity(), 2 * FIRST_BLOCKS);
        assert_eq!(
            items(&blocks),
            (0..(FIRST_BLOCKS * BLOCK + 1)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn items_come_out_in_order_across_blocks() {
        let mut blocks: Blocks<usize> = (0..40).collect();
        assert_eq!(blocks.len(), 40);
        assert!(
            blocks.blocks.capacity() >= FIRST_BLOCKS,
            "one list for 128 items"
        );
        assert_eq!(blocks.room(), 3 * BLOCK);
        assert_eq!(items(&blocks), (0..40).collect::<Vec<_>>());
        blocks.push_front(100);
        assert_eq!(blocks.front(), Some(&100));
        let drained: Vec<_> = blocks.drain().collect();
        assert_eq!(drained[0], 100);
        assert_eq!(drained[1..], (0..40).collect::<Vec<_>>());
        assert!(blocks.is_empty());
    }

    /// The point of the blocks: a queue that has held a burst takes the next one in the same
    /// memory, with no allocation and no copy.
    #[test]
    fn emptied_blocks_are_filled_again_without_allocating() {
        let mut blocks: Blocks<usize> = (0..3 * BLOCK).collect();
        let room = blocks.room();
        blocks.drain().for_each(drop);
        assert_eq!(blocks.room(), room, "emptied blocks are kept");
        for round in 0..5 {
            blocks.extend(0..3 * BLOCK);
            assert_eq!(blocks.room(), room, "round {round} took no new block");
            assert_eq!(blocks.blocks.len(), 3);
            blocks.drain().for_each(drop);
        }
    }

    #[test]
    fn a_push_to_the_front_of_a_full_block_takes_a_kept_block() {
        let mut blocks: Blocks<usize> = (0..2 * BLOCK).collect();
        blocks.drain().take(BLOCK).for_each(drop);
        let room = blocks.room();
        blocks.push_front(7);
        assert_eq!(blocks.room(), room, "the emptied block was used");
        assert_eq!(blocks.len(), BLOCK + 1);
        assert_eq!(blocks.pop_front(), Some(7));
        assert_eq!(blocks.pop_front(), Some(BLOCK));
    }

    #[test]
    fn remove_replace_and_retain_keep_the_order_and_the_count() {
        let mut blocks: Blocks<usize> = (0..3 * BLOCK).collect();
        assert_eq!(blocks.replace(BLOCK + 1, 1000), Some(BLOCK + 1));
        assert_eq!(blocks.remove(BLOCK), Some(BLOCK));
        assert_eq!(blocks.remove(3 * BLOCK), None, "past the end");
        blocks.retain(|n| *n < BLOCK || *n >= 2 * BLOCK);
        let mut expected: Vec<_> = (0..BLOCK).chain([1000]).collect();
        expected.extend(2 * BLOCK..3 * BLOCK);
        assert_eq!(items(&blocks), expected);
        assert_eq!(blocks.len(), expected.len());
        blocks.retain(|n| *n >= 2 * BLOCK);
        let rest: Vec<_> = [1000].into_iter().chain(2 * BLOCK..3 * BLOCK).collect();
        assert_eq!(
            items(&blocks),
            rest,
            "the first block went empty and behind the rest"
        );
        blocks.push_back(5);
        assert_eq!(blocks.iter().last(), Some(&5));
        assert_eq!(blocks.len(), BLOCK + 2);
    }
}
