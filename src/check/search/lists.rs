//! Operations sorted into numbered lists (a producer class, a trigger, a key's unknown
//! writes), each list in a fixed order and with a cursor at its first member not yet
//! linearized, so that "the next one still to come" is one look-up however much of the list
//! is already linearized.

use super::NONE;

pub(super) struct Lists {
    /// Members of list `l` are `items[start[l]..start[l + 1]]`.
    start: Vec<u32>,
    items: Vec<u32>,
    /// Per operation: its place in `items`, or `NONE` when it is in no list.
    pos: Vec<u32>,
    /// Per operation: its list, or `NONE`.
    list_of: Vec<u32>,
    /// Per list: the place of its first member not linearized.
    cursor: Vec<u32>,
}

impl Lists {
    /// `members` yields (operation, list) pairs in the order each list keeps; `n_ops` bounds
    /// the operations, `n_lists` the lists.
    pub(super) fn new(
        n_ops: usize,
        n_lists: usize,
        members: impl Iterator<Item = (u32, u32)> + Clone,
    ) -> Self {
        let mut start = vec![0u32; n_lists + 1];
        for (_, l) in members.clone() {
            start[l as usize + 1] += 1;
        }
        for l in 0..n_lists {
            start[l + 1] += start[l];
        }
        let mut items = vec![0u32; start[n_lists] as usize];
        // Empty lists (a part with no unknown operations) cost no per-operation arrays.
        let per_op = if items.is_empty() { 0 } else { n_ops };
        let mut pos = vec![NONE; per_op];
        let mut list_of = vec![NONE; per_op];
        let mut fill = start.clone();
        for (op, l) in members {
            let at = fill[l as usize];
            items[at as usize] = op;
            pos[op as usize] = at;
            list_of[op as usize] = l;
            fill[l as usize] += 1;
        }
        let cursor = start[..n_lists].to_vec();
        Lists {
            start,
            items,
            pos,
            list_of,
            cursor,
        }
    }

    /// Whether no list has a member.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The list's members from its first one not linearized on (later ones may be).
    #[inline]
    pub(super) fn still_to_come(&self, list: u32) -> &[u32] {
        let l = list as usize;
        &self.items[self.cursor[l] as usize..self.start[l + 1] as usize]
    }

    /// The list's first member not linearized.
    #[inline]
    pub(super) fn next(&self, list: u32) -> Option<u32> {
        self.still_to_come(list).first().copied()
    }

    /// `op` was just linearized (`linearized[op]` is set).
    #[inline]
    pub(super) fn linearized(&mut self, op: u32, linearized: &[bool]) {
        let Some(&l) = self.list_of.get(op as usize) else {
            return;
        };
        if l == NONE || self.cursor[l as usize] != self.pos[op as usize] {
            return;
        }
        let end = self.start[l as usize + 1];
        let cur = &mut self.cursor[l as usize];
        while *cur < end && linearized[self.items[*cur as usize] as usize] {
            *cur += 1;
        }
    }

    /// `op`'s linearization was undone.
    #[inline]
    pub(super) fn undone(&mut self, op: u32) {
        let Some(&l) = self.list_of.get(op as usize) else {
            return;
        };
        if l != NONE && self.pos[op as usize] < self.cursor[l as usize] {
            self.cursor[l as usize] = self.pos[op as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_skips_every_linearized_member_at_the_front_and_comes_back_on_undo() {
        // List 0: ops 2, 0, 3; list 1: op 1; op 4 in no list.
        let mut lists = Lists::new(5, 2, [(2, 0), (1, 1), (0, 0), (3, 0)].into_iter());
        let mut lin = vec![false; 5];
        assert_eq!(lists.still_to_come(0), &[2, 0, 3]);
        // A member behind the front changes nothing yet.
        lin[0] = true;
        lists.linearized(0, &lin);
        assert_eq!(lists.next(0), Some(2));
        // The front goes: the cursor passes every linearized member behind it.
        lin[2] = true;
        lists.linearized(2, &lin);
        assert_eq!(lists.still_to_come(0), &[3]);
        lin[3] = true;
        lists.linearized(3, &lin);
        assert_eq!(lists.next(0), None);
        // Undone in reverse order, the cursor comes back to each.
        lin[3] = false;
        lists.undone(3);
        assert_eq!(lists.next(0), Some(3));
        lin[2] = false;
        lists.undone(2);
        assert_eq!(lists.still_to_come(0), &[2, 0, 3]);
        lists.linearized(4, &lin);
        lists.undone(4);
        assert_eq!(lists.next(1), Some(1));
    }
}
