import{a,b,c}from"./c-4ZWQE5AJ.js";import"./c-JFGJ4GZE.js";export{a as Forgot,c as Reset,b as useLinkToken};
