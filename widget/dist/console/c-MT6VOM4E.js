import{a,b,c}from"./c-VZH4SUDL.js";import"./c-H4XBUZPO.js";import"./c-ANMMK4GE.js";export{a as Forgot,c as Reset,b as useLinkToken};
